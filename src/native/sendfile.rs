//! Large cache hits sent without copying their body: the kernel takes references to the
//! pages of a file instead of copying the bytes out of user memory.
//!
//! Why: with `writev`, the kernel copies every byte of a response from user memory into
//! socket buffers. For a 64 KiB hit that copy (`_copy_from_iter`) was a quarter of
//! `edgecache serve`'s CPU per hit (benches/http/RESULTS.md); nginx avoids it by sending
//! from its cache files with `sendfile`.
//!
//! How, in three parts:
//!
//! - [`SealedBody`]: a copy of a stored body in a sealed memfd (an anonymous in-memory file
//!   that can no longer be written, grown or shrunk), made by the server's [`FileCopies`].
//!   The server makes one on an entry's first hit when its body is at least [`MIN_LEN`]
//!   bytes, and keeps it beside the entry ([`super::ready`]) until the entry is gone.
//! - [`Bodies`]: per connection, the bodies of responses that hyper currently holds and that
//!   have a file copy, by the address of their bytes. A body is registered when it is handed
//!   to hyper ([`Bodies::body`]) and removed when hyper drops it.
//! - [`HitStream`]: the connection's socket as hyper sees it. hyper still does everything
//!   else (parsing, keep-alive, the response head, limits, graceful shutdown) and asks the
//!   stream to write a list of byte slices (`writev`). When one of those slices lies in a
//!   registered body, the stream sends the slices before it with `send(MSG_MORE)` (the head,
//!   held back so that it leaves in the same segment as the body) and the body's bytes with
//!   `sendfile` from the memfd at the same offset; everything else is a plain `writev`.
//!
//! This is correct whatever hyper writes: the memfd holds exactly the body's bytes and can
//! no longer change, and a registration exists only while the `Bytes` it describes is alive
//! (so its address cannot be reused for other bytes meanwhile). Any slice inside a
//! registered body is therefore the same bytes as the memfd at the same offset.
//!
//! The system calls (`memfd_create` + seals, `send` with `MSG_MORE`, `sendfile`) are made
//! through rustix's safe wrappers ([`super::zero_copy`]); the server hands them to its
//! [`FileCopies`]. Without them (other systems, the library's tests) there are no file copies
//! and every write is a plain `writev`.
//!
//! Costs, bounded per server: a file copy doubles the memory of the bodies that have one
//! (the L1 byte bound counts the entry's own copy only), so the copies together hold at most
//! the [`FileCopies`] byte budget (a quarter of `l1.max_bytes`); and each holds a file
//! descriptor, so at most [`Syscalls::max_files`] exist at once. Beyond either bound
//! [`FileCopies::seal`] returns `None` and such hits are written with `writev` as before.

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

use super::interim::Writer;
use crate::entry::CachedResponse;

/// Bodies shorter than this are written with `writev`: copying them costs less than the
/// second system call (`send` + `sendfile` instead of one `writev`).
pub const MIN_LEN: usize = 16 * 1024;

/// The system calls zero-copy sending needs ([`super::zero_copy`]).
#[derive(Clone, Copy, Debug)]
pub struct Syscalls {
    /// A new file holding exactly these bytes that can no longer change (a sealed memfd).
    pub sealed_file: fn(&[u8]) -> io::Result<File>,
    /// Sends the slices (with `MSG_MORE`, so they wait for what follows), then `len` bytes
    /// of the file from `offset` (`sendfile`), on the non-blocking socket. Returns the
    /// bytes sent in all, as `writev` would; an error only when nothing was sent.
    pub send_head_and_file:
        fn(BorrowedFd<'_>, &[IoSlice<'_>], &File, u64, usize) -> io::Result<usize>,
    /// How many body files may be open at once (each holds a file descriptor).
    pub max_files: usize,
}

/// The file copies of one server: the system calls that make and send them, and how many
/// exist and how many bytes they hold, within its bounds.
#[derive(Debug)]
pub struct FileCopies {
    syscalls: Option<Syscalls>,
    /// Files open now (each holds a file descriptor).
    open: AtomicUsize,
    /// Bytes they hold in all.
    held: AtomicUsize,
    /// The most bytes they may hold.
    budget: usize,
    /// The last file could not be made (the process out of descriptors or memory): hits of
    /// bodies without a copy stop asking ([`Self::has_room_for`]) until one is made (a new
    /// entry's first hit still tries) or one is released.
    failing: AtomicBool,
}

impl FileCopies {
    /// Copies made with `syscalls` (none without them), holding at most `budget` bytes:
    /// the memory they take beyond the L1 store's own (which its `max_bytes` bounds).
    pub fn new(syscalls: Option<Syscalls>, budget: usize) -> Arc<Self> {
        Arc::new(FileCopies {
            syscalls,
            open: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            budget,
            failing: AtomicBool::new(false),
        })
    }

    /// A sealed in-memory file holding `body`; `None` without the system calls, when
    /// [`Syscalls::max_files`] are open already or their bytes would pass the budget, or
    /// when creating it fails (the hit is then written from memory, as any other).
    pub fn seal(self: &Arc<Self>, body: &[u8]) -> Option<SealedBody> {
        let sys = self.syscalls.as_ref()?;
        let len = body.len();
        let open = self.open.fetch_add(1, Ordering::Relaxed);
        let held = self.held.fetch_add(len, Ordering::Relaxed);
        if !within_bounds(open, sys.max_files, held, len, self.budget) {
            self.release(len);
            return None;
        }
        match (sys.sealed_file)(body) {
            Ok(file) => {
                self.failing.store(false, Ordering::Relaxed);
                Some(SealedBody {
                    file,
                    len,
                    copies: self.clone(),
                })
            }
            Err(e) => {
                self.failing.store(true, Ordering::Relaxed);
                self.release(len);
                tracing::debug!(error = %e, "no file copy of a cached body");
                None
            }
        }
    }

    /// Whether a copy of `len` bytes would fit within the bounds now, and the last file
    /// could be made: a hint, three loads, for a body that has none to ask again (a failing
    /// system call is not retried on every hit); [`Self::seal`] decides.
    pub fn has_room_for(&self, len: usize) -> bool {
        if self.failing.load(Ordering::Relaxed) {
            return false;
        }
        self.syscalls.as_ref().is_some_and(|sys| {
            let open = self.open.load(Ordering::Relaxed);
            let held = self.held.load(Ordering::Relaxed);
            within_bounds(open, sys.max_files, held, len, self.budget)
        })
    }

    /// How many file copies exist now.
    pub fn open_files(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn release(&self, len: usize) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.held.fetch_sub(len, Ordering::Relaxed);
    }
}

/// A stored body's bytes in a sealed memfd, to send with `sendfile`.
#[derive(Debug)]
pub struct SealedBody {
    file: File,
    /// Bytes it holds (counted in its [`FileCopies`]).
    len: usize,
    copies: Arc<FileCopies>,
}

/// Whether one more file of `len` bytes fits, with `open` files holding `held` bytes now.
fn within_bounds(open: usize, max_files: usize, held: usize, len: usize, budget: usize) -> bool {
    open < max_files && held.saturating_add(len) <= budget
}

impl Drop for SealedBody {
    fn drop(&mut self) {
        self.copies.release(self.len);
        // A descriptor and its memory are back: a new file may be made again.
        self.copies.failing.store(false, Ordering::Relaxed);
    }
}

/// One body hyper holds that has a file copy: its bytes are at `start..start + len`.
struct Registered {
    start: usize,
    len: usize,
    file: Arc<SealedBody>,
}

/// The file-backed bodies of one connection's responses that hyper holds now (usually none
/// or one), by the address of their bytes.
#[derive(Default)]
pub struct Bodies(Mutex<Vec<Registered>>);

impl Bodies {
    /// `entry`'s body as `Bytes` for hyper (not copied), registered with its `file` copy
    /// until hyper drops it, so that [`HitStream`] sends it from the file.
    pub fn body(self: &Arc<Self>, entry: Arc<CachedResponse>, file: Arc<SealedBody>) -> Bytes {
        let (start, len) = (entry.body.as_ptr() as usize, entry.body.len());
        self.lock().push(Registered { start, len, file });
        Bytes::from_owner(RegisteredBody {
            entry,
            bodies: self.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Registered>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first of `bufs` that lies in a registered body: its index, the body's file and
    /// the slice's offset in it.
    fn find(&self, bufs: &[IoSlice<'_>]) -> Option<(usize, Arc<SealedBody>, u64)> {
        let registered = self.lock();
        if registered.is_empty() {
            return None;
        }
        bufs.iter().enumerate().find_map(|(i, buf)| {
            if buf.is_empty() {
                return None;
            }
            let start = buf.as_ptr() as usize;
            registered
                .iter()
                .find(|r| r.start <= start && start + buf.len() <= r.start + r.len)
                .map(|r| (i, r.file.clone(), (start - r.start) as u64))
        })
    }
}

/// The owner of a registered body's `Bytes`: keeps the entry (so the bytes) alive, and
/// removes the registration when hyper drops it.
struct RegisteredBody {
    entry: Arc<CachedResponse>,
    bodies: Arc<Bodies>,
}

impl AsRef<[u8]> for RegisteredBody {
    fn as_ref(&self) -> &[u8] {
        &self.entry.body
    }
}

impl Drop for RegisteredBody {
    fn drop(&mut self) {
        let start = self.entry.body.as_ptr() as usize;
        let mut registered = self.bodies.lock();
        if let Some(i) = registered.iter().position(|r| r.start == start) {
            registered.swap_remove(i);
        }
    }
}

/// A client connection's socket that sends registered bodies with `sendfile` (see the
/// module documentation); reads are the socket's own. Writes go through the connection's
/// [`Writer`], which puts the interim responses of its requests between hyper's messages
/// ([`super::interim`]).
pub struct HitStream {
    read: OwnedReadHalf,
    write: Arc<Writer>,
    bodies: Arc<Bodies>,
}

impl HitStream {
    /// `tcp`, sending the bodies registered in `bodies` from their files.
    pub fn new(tcp: TcpStream, bodies: Arc<Bodies>) -> Self {
        let (read, write) = tcp.into_split();
        HitStream {
            read,
            write: Writer::new(write),
            bodies,
        }
    }

    /// The connection's write side, for the interim responses of its requests.
    pub fn writer(&self) -> &Arc<Writer> {
        &self.write
    }
}

/// Sends `head` (with `MSG_MORE`) and then `len` bytes of `file` from `offset` on `tcp`;
/// returns how many bytes were sent in all, as a `writev` of the same slices would.
fn poll_send_file(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    head: &[IoSlice<'_>],
    file: &SealedBody,
    offset: u64,
    len: usize,
) -> Poll<io::Result<usize>> {
    // A registered body has a file, so the system calls are there.
    let Some(sys) = file.copies.syscalls.as_ref() else {
        return Poll::Ready(Err(io::ErrorKind::Unsupported.into()));
    };
    loop {
        ready!(tcp.poll_write_ready(cx))?;
        // `try_io` clears the socket's readiness when this returns `WouldBlock`.
        match tcp.try_io(Interest::WRITABLE, || {
            (sys.send_head_and_file)(tcp.as_fd(), head, &file.file, offset, len)
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return Poll::Ready(result),
        }
    }
}

impl AsyncRead for HitStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl AsyncWrite for HitStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let found = this.bodies.find(bufs);
        this.write.poll_hyper_write(cx, |tcp, cx| match found {
            // What follows the body (say, a pipelined response) goes in a later call.
            Some((i, file, offset)) => {
                poll_send_file(tcp.as_ref(), cx, &bufs[..i], &file, offset, bufs[i].len())
            }
            None => Pin::new(tcp).poll_write_vectored(cx, bufs),
        })
    }

    fn is_write_vectored(&self) -> bool {
        // hyper then queues the body's `Bytes` as they are instead of copying them into its
        // own buffer, which is what lets `find` recognise them.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.poll_hyper_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.poll_hyper_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Headers;
    use crate::time::Timestamp;

    fn entry(len: usize) -> Arc<CachedResponse> {
        let body = (0..len).map(|i| i as u8).collect();
        let t = Timestamp::from_secs(1);
        Arc::new(CachedResponse::new(200, Headers::new(), body, t, t))
    }

    /// A `SealedBody` over any file, counted as `FileCopies::seal` counts it.
    fn file() -> Arc<SealedBody> {
        let copies = FileCopies::new(None, usize::MAX);
        copies.open.fetch_add(1, Ordering::Relaxed);
        let file = File::open("/dev/null").expect("open /dev/null");
        Arc::new(SealedBody {
            file,
            len: 0,
            copies,
        })
    }

    #[test]
    fn finds_the_first_slice_inside_a_registered_body() {
        let bodies = Arc::new(Bodies::default());
        let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        assert!(bodies.find(&[IoSlice::new(&head)]).is_none());
        let entry = entry(64 << 10);
        let bytes = bodies.body(entry.clone(), file());
        assert_eq!(
            bytes.as_ptr(),
            entry.body.as_ptr(),
            "the body is not copied"
        );
        assert_eq!(&bytes[..], &entry.body[..]);
        // The head, then the body from offset 100 (as after a partial write).
        let slices = [IoSlice::new(&head), IoSlice::new(&bytes[100..])];
        let (index, _, offset) = bodies.find(&slices).expect("body slice found");
        assert_eq!((index, offset), (1, 100));
        // Memory outside the body, or an empty slice, is not the body.
        let copy = bytes.to_vec();
        assert!(bodies.find(&[IoSlice::new(&copy)]).is_none());
        let end = &bytes[bytes.len()..];
        assert!(bodies.find(&[IoSlice::new(end)]).is_none());
        // Any slice of the entry's bytes is recognised, however it was made.
        assert!(bodies.find(&[IoSlice::new(&entry.body[1..])]).is_some());
    }

    #[test]
    fn file_copies_stay_within_the_file_and_byte_bounds() {
        assert!(within_bounds(0, 1, 0, 100, 100));
        assert!(!within_bounds(1, 1, 0, 100, 100), "no file descriptor left");
        assert!(within_bounds(3, 10, 60, 40, 100));
        assert!(
            !within_bounds(3, 10, 61, 40, 100),
            "the byte budget is full"
        );
        assert!(
            !within_bounds(0, 10, usize::MAX - 1, 2, usize::MAX - 1),
            "no overflow"
        );
    }

    #[test]
    fn a_registration_lasts_as_long_as_its_bytes() {
        let bodies = Arc::new(Bodies::default());
        let entry = entry(32 << 10);
        let first = bodies.body(entry.clone(), file());
        let second = bodies.body(entry.clone(), file());
        assert_eq!(bodies.lock().len(), 2);
        let slice = first.slice(10..20);
        drop(first);
        // A slice keeps the same owner alive.
        assert_eq!(bodies.lock().len(), 2);
        drop(slice);
        assert_eq!(bodies.lock().len(), 1);
        assert!(bodies.find(&[IoSlice::new(&second)]).is_some());
        drop(second);
        assert!(bodies.lock().is_empty());
        assert!(bodies.find(&[IoSlice::new(&entry.body)]).is_none());
    }

    #[test]
    fn no_file_copies_without_the_system_calls() {
        let copies = FileCopies::new(None, usize::MAX);
        assert!(copies.seal(&[1; MIN_LEN]).is_none());
        assert_eq!(copies.open_files(), 0);
    }
}
