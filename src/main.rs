//! The `edgecache` command: `edgecache serve` runs the caching reverse proxy.

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
    // Before the body-file budget is read from it: both are sized by the open-file limit.
    let limits = config
        .connections
        .resolve(edgecache::native::connections::raise_open_file_limit());
    if let Some(syscalls) = zero_copy::syscalls() {
        edgecache::native::sendfile::enable(syscalls);
    }
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

/// The system calls behind `edgecache::native::sendfile` (large hits sent from a sealed
/// memfd with `sendfile` instead of copied by `writev`). They are here because they need
/// `unsafe` and the library forbids it. The C library is linked anyway, so they are declared
/// directly, for the Linux targets whose constants and `off_t` width are the ones below;
/// elsewhere there are none and hits are written with `writev`.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod zero_copy {
    use std::ffi::{c_char, c_int, c_uint, c_void};
    use std::fs::File;
    use std::io::{self, IoSlice, Write};
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};

    use edgecache::native::sendfile::Syscalls;

    extern "C" {
        fn memfd_create(name: *const c_char, flags: c_uint) -> c_int;
        fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
        fn send(fd: c_int, buf: *const c_void, len: usize, flags: c_int) -> isize;
        fn sendfile(out_fd: c_int, in_fd: c_int, offset: *mut i64, count: usize) -> isize;
        fn getrlimit(resource: c_int, rlim: *mut [u64; 2]) -> c_int;
    }

    const MFD_CLOEXEC: c_uint = 1;
    const MFD_ALLOW_SEALING: c_uint = 2;
    const F_ADD_SEALS: c_int = 1033;
    const F_SEAL_SEAL: c_int = 1;
    const F_SEAL_SHRINK: c_int = 2;
    const F_SEAL_GROW: c_int = 4;
    const F_SEAL_WRITE: c_int = 8;
    const MSG_NOSIGNAL: c_int = 0x4000;
    const MSG_MORE: c_int = 0x8000;
    const RLIMIT_NOFILE: c_int = 7;

    /// The calls, with body files limited to a quarter of the soft limit on open file
    /// descriptors (the rest stays for connections).
    pub fn syscalls() -> Option<Syscalls> {
        let mut rlimit = [0u64; 2];
        // SAFETY: `rlimit` has the layout of `struct rlimit` (two 64-bit counts) here.
        if unsafe { getrlimit(RLIMIT_NOFILE, &mut rlimit) } != 0 {
            return None;
        }
        Some(Syscalls {
            sealed_file: sealed_memfd,
            send_head_and_file,
            max_files: usize::try_from(rlimit[0] / 4).unwrap_or(usize::MAX),
        })
    }

    /// A memfd holding `bytes`, sealed against any change.
    fn sealed_memfd(bytes: &[u8]) -> io::Result<File> {
        let flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
        // SAFETY: a NUL-terminated name and valid flags.
        let fd = unsafe { memfd_create(c"edgecache-body".as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created, and nothing else owns it.
        let mut file = unsafe { File::from_raw_fd(fd) };
        file.write_all(bytes)?;
        let seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;
        // SAFETY: `F_ADD_SEALS` takes one int argument.
        if unsafe { fcntl(file.as_raw_fd(), F_ADD_SEALS, seals) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(file)
    }

    /// `head` with `send(MSG_MORE)` (so it leaves with the body rather than in a segment of
    /// its own), then `len` bytes of `file` from `offset` with `sendfile`.
    fn send_head_and_file(
        socket: BorrowedFd<'_>,
        head: &[IoSlice<'_>],
        file: &File,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        // What was sent before a call failed is what the caller must hear of; the error
        // comes again on its next call.
        let partial = |sent: usize| {
            if sent > 0 {
                Ok(sent)
            } else {
                Err(io::Error::last_os_error())
            }
        };
        let mut sent = 0;
        for slice in head {
            let flags = MSG_MORE | MSG_NOSIGNAL;
            // SAFETY: the pointer and length describe `slice`, borrowed for the call.
            let n = unsafe { send(fd, slice.as_ptr().cast(), slice.len(), flags) };
            if n < 0 {
                return partial(sent);
            }
            sent += n as usize;
            if (n as usize) < slice.len() {
                return Ok(sent);
            }
        }
        let Ok(mut offset) = i64::try_from(offset) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        // SAFETY: both descriptors are open for the call; `offset` is an `off_t`.
        let n = unsafe { sendfile(fd, file.as_raw_fd(), &mut offset, len) };
        if n < 0 {
            return partial(sent);
        }
        Ok(sent + n as usize)
    }
}

/// No zero-copy system calls on this target: hits are written with `writev`.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod zero_copy {
    pub fn syscalls() -> Option<edgecache::native::sendfile::Syscalls> {
        None
    }
}

/// Hits sent from sealed memfds by the real system calls: bodies arrive byte for byte, with
/// keep-alive, pipelining, `HEAD` and a client that reads slowly.
#[cfg(all(
    test,
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use edgecache::engine::EngineConfig;
    use edgecache::native::{sendfile, server};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpSocket, TcpStream};

    /// The origin's body for `/N`: N bytes that differ from those of other sizes.
    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ len as u8).collect()
    }

    /// The end of the header section in `buf`, if it is all there.
    fn head_end(buf: &[u8]) -> Option<usize> {
        buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
    }

    /// An origin answering `GET /N` with [`body`]`(N)`, cacheable for an hour, keep-alive.
    async fn origin() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0; 4096];
                    loop {
                        while head_end(&buf).is_none() {
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = head_end(&buf).unwrap();
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end);
                        let path = head.split(' ').nth(1).unwrap_or("/0");
                        let body = body(path[1..].parse().unwrap_or(0));
                        let mut out = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\
                             Cache-Control: public, max-age=3600\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        out.extend_from_slice(&body);
                        if conn.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// `edgecache serve` in front of a fresh [`origin`], with zero-copy sending on.
    async fn cache() -> SocketAddr {
        sendfile::enable(super::zero_copy::syscalls().expect("system calls"));
        let origin = format!("http://{}", origin().await);
        let engine = server::build_engine(EngineConfig::default(), &origin, None).unwrap();
        let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let forever = std::future::pending();
        tokio::spawn(server::run(
            engine,
            listener,
            forever,
            Duration::from_secs(1),
            edgecache::native::connections::ConnectionLimits::default()
                .resolve(edgecache::native::connections::open_file_limit()),
        ));
        addr
    }

    /// A client connection that reads responses one after another.
    struct Client {
        conn: TcpStream,
        buf: Vec<u8>,
        /// Read this many bytes at a time, pausing between reads when `slow`.
        chunk: usize,
        slow: bool,
    }

    impl Client {
        async fn new(addr: SocketAddr) -> Client {
            Client {
                conn: TcpStream::connect(addr).await.unwrap(),
                buf: Vec::new(),
                chunk: 64 << 10,
                slow: false,
            }
        }

        async fn fill(&mut self) {
            let mut chunk = vec![0; self.chunk];
            let n = self.conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-response");
            self.buf.extend_from_slice(&chunk[..n]);
            if self.slow {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }

        /// Sends requests for `(method, path)` back to back, without waiting for answers.
        async fn send(&mut self, requests: &[(&str, &str)]) {
            let mut out = String::new();
            for (method, path) in requests {
                out += &format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n");
            }
            self.conn.write_all(out.as_bytes()).await.unwrap();
        }

        /// The next response: its head (lower-cased) and body (none for `HEAD`).
        async fn response(&mut self, head_request: bool) -> (String, Vec<u8>) {
            while head_end(&self.buf).is_none() {
                self.fill().await;
            }
            let end = head_end(&self.buf).unwrap();
            let head = String::from_utf8_lossy(&self.buf[..end]).to_lowercase();
            self.buf.drain(..end);
            if head_request {
                return (head, Vec::new());
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or_else(|| panic!("no content-length: {head}"));
            while self.buf.len() < len {
                self.fill().await;
            }
            (head, self.buf.drain(..len).collect())
        }

        async fn get(&mut self, path: &str) -> (String, Vec<u8>) {
            self.send(&[("GET", path)]).await;
            self.response(false).await
        }
    }

    /// How many sealed body files this process has open.
    fn body_files() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().contains("edgecache-body"))
            .count()
    }

    #[tokio::test]
    async fn hits_arrive_byte_for_byte_from_memory_and_from_files() {
        let addr = cache().await;
        let mut client = Client::new(addr).await;
        let sizes = [
            1024,
            sendfile::MIN_LEN - 1,
            sendfile::MIN_LEN,
            64 << 10,
            (1 << 20) + 3,
        ];
        for len in sizes {
            let path = format!("/{len}");
            for round in 0..3 {
                let (head, got) = client.get(&path).await;
                assert!(head.starts_with("http/1.1 200"), "{head}");
                assert_eq!(got.len(), len, "{len} bytes, round {round}");
                assert!(got == body(len), "{len} bytes differ, round {round}");
                if round > 0 {
                    assert!(head.contains("edgecache-l1; hit"), "{head}");
                }
            }
        }
        // The three bodies of at least `MIN_LEN` bytes were hits with a file each.
        assert!(body_files() >= 3, "{} body files", body_files());
    }

    #[tokio::test]
    async fn pipelined_requests_and_head_keep_their_framing() {
        let addr = cache().await;
        let mut client = Client::new(addr).await;
        // Cache both objects, so the batch below is all hits.
        client.get("/70000").await;
        client.get("/1000").await;
        let batch = [
            ("GET", "/70000"),
            ("HEAD", "/70000"),
            ("GET", "/1000"),
            ("GET", "/70000"),
            ("GET", "/70000"),
        ];
        client.send(&batch).await;
        for (method, path) in batch {
            let (head, got) = client.response(method == "HEAD").await;
            assert!(
                head.contains("edgecache-l1; hit"),
                "{method} {path}: {head}"
            );
            let len: usize = path[1..].parse().unwrap();
            if method == "GET" {
                assert!(got == body(len), "{method} {path}: body differs");
            }
        }
        // Nothing was sent beyond the five responses.
        assert!(client.buf.is_empty());
    }

    #[tokio::test]
    async fn a_slow_reader_gets_every_byte() {
        let addr = cache().await;
        let len = 4 << 20;
        let path = format!("/{len}");
        Client::new(addr).await.get(&path).await;
        // A small receive window and small, paced reads: the socket fills, and `sendfile`
        // sends the body in many parts.
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut client = Client {
            conn: socket.connect(addr).await.unwrap(),
            buf: Vec::new(),
            chunk: 16 << 10,
            slow: true,
        };
        for _ in 0..2 {
            let (head, got) = client.get(&path).await;
            assert!(head.contains("edgecache-l1; hit"), "{head}");
            assert!(got == body(len), "body differs");
        }
    }
}
