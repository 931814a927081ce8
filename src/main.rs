//! The `edgecache` command: `edgecache serve` runs the caching reverse proxy.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use edgecache::native::config::ServeConfig;
use edgecache::native::server;

/// mimalloc instead of the system allocator: a cache hit still makes a few dozen small
/// allocations, and glibc's malloc/free took ~18% of a hit's CPU (benches/http/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// edgecache: an HTTP edge cache (RFC 9111) in front of one origin.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the caching reverse proxy.
    ///
    /// Flags override the config file. With no --redis the cache runs embedded, in memory
    /// only. The admin API (purge, stats) is enabled by setting EDGECACHE_ADMIN_TOKEN (or
    /// cache.admin.token in the file) to a secret of 16+ characters.
    Serve(ServeArgs),
    /// Check a config file and print the effective configuration (secrets redacted).
    CheckConfig {
        /// TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Origin base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    origin: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8787].
    #[arg(long)]
    listen: Option<String>,
    /// Redis URL of the shared tier, e.g. redis://127.0.0.1:6379/0 (memory only without it).
    #[arg(long)]
    redis: Option<String>,
    /// PEM file of CA certificates an https:// origin may also chain to (Mozilla's roots
    /// are always trusted).
    #[arg(long)]
    origin_ca_file: Option<PathBuf>,
    /// PEM file of CA certificates a rediss:// server may also chain to (Mozilla's roots
    /// are always trusted).
    #[arg(long)]
    redis_ca_file: Option<PathBuf>,
    /// TOML config file (see README for the schema).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30)]
    grace_secs: u64,
}

fn load(args: &ServeArgs) -> Result<ServeConfig, String> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::from_file(path).map_err(|e| e.to_string())?,
        None => ServeConfig::default(),
    };
    if let Some(origin) = &args.origin {
        config.origin = origin.clone();
    }
    if let Some(listen) = &args.listen {
        config.listen = listen.clone();
    }
    if let Some(redis) = &args.redis {
        config.redis = Some(redis.clone());
    }
    if let Some(path) = &args.origin_ca_file {
        config.origin_ca_file = Some(path.clone());
    }
    if let Some(path) = &args.redis_ca_file {
        config.redis_ca_file = Some(path.clone());
    }
    if let Ok(token) = std::env::var("EDGECACHE_ADMIN_TOKEN") {
        if !token.is_empty() {
            config.cache.admin.token = Some(token);
        }
    }
    Ok(config)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => {
            match ServeConfig::from_file(&config).and_then(|c| c.validate().map(|_| c)) {
                Ok(c) => {
                    println!("{c:#?}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (listen, trust) = match config.validate().and_then(|l| Ok((l, config.trust()?))) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // On one CPU (say, pinned with taskset) a single-threaded runtime: a multi-threaded one
    // would still run one worker there, and pay for cross-thread wake-ups and work stealing
    // between it and the thread that accepts connections.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Before anything is sized by it (the connection caps, zero-copy's body files).
    let limits = config
        .connections
        .resolve(edgecache::native::connections::raise_open_file_limit());
    runtime.block_on(async move {
        let engine = match server::build_engine_with_trust(
            config.cache.clone(),
            &config.origin,
            config.redis.as_deref(),
            &trust,
        ) {
            Ok(engine) => engine,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        match engine.check_shared_tier().await {
            Ok(warnings) => {
                for warning in warnings {
                    tracing::warn!("edgecache: {warning}");
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
        let listener = match server::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        if config.redis.is_some() {
            server::spawn_purge_sync(engine.clone());
            server::spawn_stats_report(engine.clone());
        }
        server::spawn_write_behind_flush(engine.clone());
        tracing::info!(
            %listen,
            origin = %config.origin,
            admin = if config.cache.admin.token.is_some() { "enabled" } else { "disabled" },
            tier = if config.redis.is_some() { "L1 + Redis" } else { "L1 only (memory)" },
            max_connections = limits.max,
            max_connections_per_client = limits.max_per_client,
            header_timeout_ms = limits.header_timeout.as_millis() as u64,
            "edgecache serving"
        );
        server::run(
            engine,
            listener,
            server::shutdown_signal(),
            Duration::from_secs(args.grace_secs),
            limits,
        )
        .await;
        ExitCode::SUCCESS
    })
}
