//! Whether a deployed Worker could reach an origin: the check `scripts/deploy.sh` makes
//! before it deploys, which is the one the Worker itself makes when it reads
//! `EDGECACHE_ORIGIN` ([`edgecache::engine::config::is_private_origin`]), so the two never
//! disagree.
//!
//! `cargo run --quiet --example check_origin -- https://origin.example`: exit status 0 when
//! the origin may be deployed, 1 (with the reason on stderr) when it is a loopback or
//! private-network address, 2 without an argument.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(origin) = std::env::args().nth(1) else {
        eprintln!("usage: check_origin <origin base URL>");
        return ExitCode::from(2);
    };
    if edgecache::engine::config::is_private_origin(origin.trim()) {
        eprintln!(
            "'{origin}' is a loopback or private-network address: a deployed Worker cannot reach it"
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
