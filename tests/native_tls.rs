#![cfg(all(feature = "server", not(target_arch = "wasm32")))]
//! TLS natively, with real parts on loopback: the `edgecache` binary (`edgecache serve`,
//! started as a child process with a config file, its log captured) in front of
//!
//! - a real `redis-server` listening only on a TLS port (`--port 0 --tls-port P`), with a
//!   password, reached over `rediss://`;
//! - a real HTTPS origin (tokio-rustls around the shared test origin of `support`), which
//!   records the SNI and ALPN it was offered and the handshakes that failed.
//!
//! The certificates come from a throwaway CA made with rcgen for each test; nothing is
//! trusted but it (through `redis_ca_file` / `origin_ca_file`) and Mozilla's roots.
//!
//! Run with `cargo test --features server --test native_tls`.

mod support;
use support::*;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
// Tokio's clock: the tests measure real time on purpose (the core never reads a clock).
use tokio::time::Instant;

/// The password of every test Redis; it must never appear in edgecache's output.
const PASSWORD: &str = "s3cret-redis-pa55word";

// ---------------------------------------------------------------------------------------
// A throwaway PKI
// ---------------------------------------------------------------------------------------

/// A test's own directory (removed on drop).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "edgecache-tls-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, and the server certificates it signs.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A server certificate and its key.
struct ServerCert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    fn server(&self, names: &[&str]) -> ServerCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// A real redis-server on a TLS port only
// ---------------------------------------------------------------------------------------

/// A `redis-server` that speaks only TLS and wants [`PASSWORD`]; SIGKILLed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    async fn start(dir: &TempDir, ca: &Ca, cert: &ServerCert) -> TlsRedis {
        let bin = redis_binary();
        assert!(
            bin.exists(),
            "redis-server not found at {}: these tests need a real Redis built with TLS \
             (apt-get install redis-server, or set REDIS_SERVER=/path/to/redis-server)",
            bin.display()
        );
        let cert_file = dir.file("redis.pem", cert.cert_pem.as_bytes());
        let key_file = dir.file("redis-key.pem", cert.key_pem.as_bytes());
        let ca_file = dir.file("redis-ca.pem", ca.pem.as_bytes());
        let mut errors = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--tls-cert-file")
                .arg(&cert_file)
                .arg("--tls-key-file")
                .arg(&key_file)
                .arg("--tls-ca-cert-file")
                .arg(&ca_file)
                .args(["--tls-auth-clients", "no", "--requirepass", PASSWORD])
                .arg("--dir")
                .arg(&dir.0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    return TlsRedis { child, port };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    errors.push(format!("port {port}: exited with {status}"));
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    errors.push(format!("port {port}: not listening within 5 s"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("could not start a TLS redis-server: {errors:?}");
    }

    /// The URL edgecache is given: TLS, the password, database 0.
    fn url(&self) -> String {
        format!("rediss://:{PASSWORD}@127.0.0.1:{}/0", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// A real HTTPS origin
// ---------------------------------------------------------------------------------------

/// What the TLS layer of the origin saw.
#[derive(Default)]
struct Handshakes {
    /// `(SNI, ALPN)` of each completed handshake.
    completed: Vec<(Option<String>, Option<String>)>,
    /// Why each failed handshake failed.
    failed: Vec<String>,
}

/// The test origin of `support` behind TLS, on 127.0.0.1, with `cert`.
struct HttpsOrigin {
    addr: SocketAddr,
    state: Arc<OriginState>,
    handshakes: Arc<Mutex<Handshakes>>,
    task: JoinHandle<()>,
}

impl HttpsOrigin {
    async fn start(cert: &ServerCert) -> HttpsOrigin {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], key)
        .expect("server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("origin bind");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(OriginState::default());
        let handshakes = Arc::new(Mutex::new(Handshakes::default()));
        let (shared, seen) = (state.clone(), handshakes.clone());
        let task = tokio::spawn(async move {
            // Connections live in the set: aborting this task closes them all.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, state, seen) = (acceptor.clone(), shared.clone(), seen.clone());
                connections.spawn(async move {
                    let tls = match acceptor.accept(stream).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            seen.lock().unwrap().failed.push(e.to_string());
                            return;
                        }
                    };
                    let (_, session) = tls.get_ref();
                    let sni = session.server_name().map(str::to_string);
                    let alpn = session
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned());
                    seen.lock().unwrap().completed.push((sni, alpn));
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(origin_answer(state, req).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        HttpsOrigin {
            addr,
            state,
            handshakes,
            task,
        }
    }

    /// The origin by name (`localhost`, so SNI is sent).
    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// GET/HEAD requests received in all.
    fn total(&self) -> u64 {
        self.state.counts.lock().unwrap().values().sum()
    }

    fn completed(&self) -> Vec<(Option<String>, Option<String>)> {
        self.handshakes.lock().unwrap().completed.clone()
    }

    fn failed(&self) -> Vec<String> {
        self.handshakes.lock().unwrap().failed.clone()
    }
}

impl Drop for HttpsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// The edgecache binary
// ---------------------------------------------------------------------------------------

/// `edgecache serve --config FILE` as a child process, its output in a file; killed on
/// drop.
struct Serve {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

/// Runs the binary with `args`, output to `log`.
fn edgecache(args: &[&str], log: &Path) -> Command {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_edgecache"));
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env("EDGECACHE_ADMIN_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    command
}

impl Serve {
    /// Starts one with the config file `toml` (plus `listen`), ready once it accepts.
    async fn start(dir: &TempDir, name: &str, toml: &str) -> Serve {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.file(
            &format!("{name}.toml"),
            format!("listen = \"{addr}\"\n{toml}").as_bytes(),
        );
        let log = dir.0.join(format!("{name}.log"));
        let config_arg = config.to_string_lossy().into_owned();
        let child = edgecache(&["serve", "--config", &config_arg], &log)
            .spawn()
            .expect("run edgecache");
        let mut serve = Serve { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect(addr).await.is_ok() {
                return serve;
            }
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!("edgecache exited with {status}:\n{}", serve.output());
            }
            if Instant::now() >= deadline {
                panic!("edgecache not listening within 15 s:\n{}", serve.output());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything it printed so far.
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running (no panic, no exit).
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Frontend for Serve {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config-file string value (paths and URLs here have no quotes or backslashes).
fn quoted(value: impl AsRef<str>) -> String {
    format!("\"{}\"", value.as_ref())
}

// ---------------------------------------------------------------------------------------
// rediss://
// ---------------------------------------------------------------------------------------

/// With the CA file, an instance stores a miss in the TLS Redis and another instance reads
/// it back from there: both ways through `rediss://`, with the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_ca_file_stores_and_reads_back() {
    let dir = TempDir::new("rediss-ok");
    let ca = Ca::new("edgecache test CA");
    let redis = TlsRedis::start(&dir, &ca, &ca.server(&["127.0.0.1", "localhost"])).await;
    let origin = Origin::start().await;
    let ca_file = dir.file("ca.pem", ca.pem.as_bytes());
    let toml = format!(
        "origin = {}\nredis = {}\nredis_ca_file = {}\n",
        quoted(origin.url()),
        quoted(redis.url()),
        quoted(ca_file.to_string_lossy()),
    );
    let a = Serve::start(&dir, "a", &toml).await;
    let b = Serve::start(&dir, "b", &toml).await;
    let path = url("/tls/shared", &[("cc", "max-age=60")]);

    let first = a.get(&path).await;
    assert_eq!(first.status, 200, "{}", a.output());
    assert_eq!(first.text(), body_for(&path, 1));
    assert!(
        first.cache_status().contains("stored"),
        "{}",
        first.cache_status()
    );
    // The L2 write follows the response: poll the other instance until it reads it from
    // Redis (an L2 hit), never going to the origin itself.
    let from_l2 = eventually("an L2 hit on the second instance", WAIT, async || {
        let r = b.get(&path).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), body_for(&path, 1), "only the first origin answer");
        r.cache_status().contains("edgecache-l2; hit").then_some(r)
    })
    .await;
    assert!(from_l2.header("age").is_some(), "Age on an L2 hit");
    assert_eq!(origin.count(&path), 1, "one origin fetch in all");
    for cache in [&a, &b] {
        let stats = cache.stats().await;
        assert_eq!(
            stats["engine"]["l2_errors"],
            0,
            "{stats}\n{}",
            cache.output()
        );
    }
    for cache in [&a, &b] {
        assert!(!cache.output().contains(PASSWORD), "{}", cache.output());
    }
}

/// Without the CA file the Redis certificate is untrusted: the shared tier fails, requests
/// are still answered from the origin and L1 (never a 5xx), and the log says the
/// certificate is the problem without showing the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_an_untrusted_certificate_degrades_to_l1_and_says_why() {
    let dir = TempDir::new("rediss-untrusted");
    let ca = Ca::new("edgecache untrusted CA");
    let redis = TlsRedis::start(&dir, &ca, &ca.server(&["127.0.0.1"])).await;
    let origin = Origin::start().await;
    let toml = format!(
        "origin = {}\nredis = {}\n",
        quoted(origin.url()),
        quoted(redis.url())
    );
    let mut cache = Serve::start(&dir, "untrusted", &toml).await;

    // Enough requests (each makes a few Redis commands) to open the circuit, which logs.
    let log = eventually("the shared tier's failure in the log", WAIT, async || {
        let path = url("/tls/untrusted", &[("cc", "max-age=60"), ("n", "x")]);
        let r = cache.get(&path).await;
        assert_eq!(r.status, 200, "{r:?}\n{}", cache.output());
        let log = cache.output();
        log.contains("shared tier (Redis) failing").then_some(log)
    })
    .await;
    let line = log
        .lines()
        .find(|l| l.contains("shared tier (Redis) failing"))
        .unwrap();
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    assert!(line.contains("UnknownIssuer"), "{line}");

    // L1 and the origin carry on.
    let path = url("/tls/after", &[("cc", "max-age=60")]);
    let miss = cache.get(&path).await;
    assert_eq!(miss.status, 200);
    assert_eq!(miss.text(), body_for(&path, 1));
    let hit = cache.get(&path).await;
    assert!(
        hit.cache_status().starts_with("edgecache-l1; hit"),
        "{}",
        hit.cache_status()
    );
    assert_eq!(origin.count(&path), 1);
    assert!(cache.stat("l2_errors").await > 0);
    assert!(cache.running());
    assert!(!cache.output().contains(PASSWORD), "{}", cache.output());
}

// ---------------------------------------------------------------------------------------
// https:// origins
// ---------------------------------------------------------------------------------------

/// A miss is fetched over TLS (SNI the origin's name, ALPN http/1.1), then is an L1 hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_origin_is_fetched_over_tls_then_served_from_l1() {
    let dir = TempDir::new("https-ok");
    let ca = Ca::new("edgecache test CA");
    let origin = HttpsOrigin::start(&ca.server(&["localhost"])).await;
    let ca_file = dir.file("ca.pem", ca.pem.as_bytes());
    let toml = format!(
        "origin = {}\norigin_ca_file = {}\n",
        quoted(origin.url()),
        quoted(ca_file.to_string_lossy())
    );
    let cache = Serve::start(&dir, "https", &toml).await;
    let path = url("/tls/origin", &[("cc", "max-age=60")]);

    let miss = cache.get(&path).await;
    assert_eq!(miss.status, 200, "{}\n{}", miss.text(), cache.output());
    assert_eq!(miss.text(), body_for(&path, 1));
    let cs = miss.cache_status();
    assert!(
        cs.contains("fwd=uri-miss; fwd-status=200") && cs.contains("stored"),
        "{cs}"
    );
    let hit = cache.get(&path).await;
    assert_eq!(hit.text(), body_for(&path, 1));
    assert!(
        hit.cache_status().starts_with("edgecache-l1; hit"),
        "{}",
        hit.cache_status()
    );
    assert_eq!(origin.total(), 1);
    assert_eq!(
        origin.completed(),
        vec![(Some("localhost".to_string()), Some("http/1.1".to_string()))],
        "one TLS connection, SNI localhost, ALPN http/1.1"
    );
    assert!(origin.failed().is_empty(), "{:?}", origin.failed());
}

/// An origin certificate from a CA edgecache does not trust is a 502, every time: the
/// handshake is refused (the origin sees it fail) and no request is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_origin_certificate_is_a_502() {
    let dir = TempDir::new("https-untrusted");
    let ca = Ca::new("edgecache untrusted CA");
    let origin = HttpsOrigin::start(&ca.server(&["localhost"])).await;
    let toml = format!("origin = {}\n", quoted(origin.url()));
    let mut cache = Serve::start(&dir, "untrusted-origin", &toml).await;
    for _ in 0..2 {
        let r = cache
            .get(&url("/tls/untrusted", &[("cc", "max-age=60")]))
            .await;
        assert_eq!(r.status, 502, "{r:?}");
        assert!(
            r.cache_status().contains("origin-unreachable"),
            "{}",
            r.cache_status()
        );
    }
    assert!(cache.running(), "{}", cache.output());
    assert_eq!(origin.total(), 0, "no request reached the origin");
    assert!(origin.completed().is_empty());
    // The origin learns of the refusal from the client's alert, maybe after the 502.
    let failed = eventually("the origin to see TLS handshakes fail", WAIT, async || {
        Some(origin.failed()).filter(|f| f.len() >= 2)
    })
    .await;
    assert!(
        failed.iter().all(|f| f.contains("UnknownCA")),
        "edgecache refused the certificate: {failed:?}"
    );
    // Said once in the log, for both requests.
    let output = cache.output();
    let lines: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("cannot connect to the origin"))
        .collect();
    assert_eq!(lines.len(), 1, "{output}");
    assert!(
        lines[0].contains("invalid peer certificate: UnknownIssuer"),
        "{output}"
    );
}

/// A certificate from a trusted CA for another name is refused too: the host name is
/// checked, not only the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_certificate_for_another_name_is_a_502() {
    let dir = TempDir::new("https-name");
    let ca = Ca::new("edgecache test CA");
    let origin = HttpsOrigin::start(&ca.server(&["other.example"])).await;
    let ca_file = dir.file("ca.pem", ca.pem.as_bytes());
    let toml = format!(
        "origin = {}\norigin_ca_file = {}\n",
        quoted(origin.url()),
        quoted(ca_file.to_string_lossy())
    );
    let mut cache = Serve::start(&dir, "wrong-name", &toml).await;
    let r = cache.get("/tls/name").await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(cache.running(), "{}", cache.output());
    let output = cache.output();
    assert!(
        output.contains("certificate not valid for name \"localhost\""),
        "{output}"
    );
    assert_eq!(origin.total(), 0);
    eventually("the origin to see the handshake fail", WAIT, async || {
        (!origin.failed().is_empty()).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Start-up checks
// ---------------------------------------------------------------------------------------

/// Runs `edgecache serve` with `args` until it exits (bounded); its exit code and output.
async fn serve_exits(dir: &TempDir, name: &str, args: &[&str]) -> (Option<i32>, String) {
    let log = dir.0.join(format!("{name}.log"));
    let mut child = edgecache(args, &log).spawn().expect("run edgecache");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "edgecache {args:?} still running after 15 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (
        status.code(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

/// A missing, unreadable or non-PEM CA file, a CA file for a plaintext upstream, and
/// `#insecure` each stop the start with a message naming the field; none shows the
/// password.
#[tokio::test]
async fn bad_tls_settings_stop_the_start_naming_the_field() {
    let dir = TempDir::new("bad-config");
    let garbage = dir.file("garbage.pem", b"not a certificate\n");
    let missing = dir.0.join("missing.pem");
    let (garbage, missing) = (garbage.to_string_lossy(), missing.to_string_lossy());
    let ca = Ca::new("edgecache test CA");
    let good = dir.file("ca.pem", ca.pem.as_bytes());
    let good = good.to_string_lossy();
    let rediss = format!("rediss://:{PASSWORD}@127.0.0.1:1/0");
    let redis = format!("redis://:{PASSWORD}@127.0.0.1:1/0");
    let insecure = format!("{rediss}#insecure");
    let https = "https://localhost:1";
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "missing-origin-ca",
            vec!["--origin", https, "--origin-ca-file", &missing],
            "`origin_ca_file`: cannot read",
        ),
        (
            "garbage-redis-ca",
            vec![
                "--origin",
                https,
                "--redis",
                &rediss,
                "--redis-ca-file",
                &garbage,
            ],
            "`redis_ca_file`:",
        ),
        (
            "origin-ca-for-http",
            vec!["--origin", "http://127.0.0.1:1", "--origin-ca-file", &good],
            "`origin_ca_file`: is set but origin is not an https:// URL",
        ),
        (
            "redis-ca-for-plaintext",
            vec![
                "--origin",
                https,
                "--redis",
                &redis,
                "--redis-ca-file",
                &good,
            ],
            "`redis_ca_file`: is set but redis is not a rediss:// URL",
        ),
        (
            "insecure",
            vec!["--origin", https, "--redis", &insecure],
            "`redis`: #insecure would turn certificate verification off",
        ),
    ];
    for (name, flags, expected) in cases {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend(flags);
        let (code, output) = serve_exits(&dir, name, &args).await;
        assert_eq!(code, Some(2), "{name}: {output}");
        assert!(
            output.contains(expected),
            "{name}: wanted {expected:?} in {output}"
        );
        assert!(!output.contains("panicked"), "{name}: {output}");
        assert!(!output.contains(PASSWORD), "{name}: {output}");
    }
}
