//! The system calls behind zero-copy hits ([`super::sendfile`]): a sealed memfd holding a
//! body, `send(MSG_MORE)` for the head and `sendfile` for the body, through rustix's safe
//! wrappers. Linux only; elsewhere there are none and hits are written with `writev`.

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::io::{self, IoSlice, Write};
    use std::os::fd::BorrowedFd;

    use rustix::fs::{MemfdFlags, SealFlags};
    use rustix::net::SendFlags;

    use crate::native::sendfile::Syscalls;

    /// The calls, with body files limited to a quarter of the open-file limit (the rest
    /// stays for connections).
    pub fn syscalls() -> Option<Syscalls> {
        let open_files = crate::native::connections::open_file_limit();
        Some(Syscalls {
            sealed_file: sealed_memfd,
            send_head_and_file,
            max_files: usize::try_from(open_files / 4).unwrap_or(usize::MAX),
        })
    }

    /// A memfd holding `bytes`, sealed against any change.
    fn sealed_memfd(bytes: &[u8]) -> io::Result<File> {
        let fd = rustix::fs::memfd_create(
            c"edgecache-body",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut file = File::from(fd);
        file.write_all(bytes)?;
        let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
        rustix::fs::fcntl_add_seals(&file, seals)?;
        Ok(file)
    }

    /// `head` with `send(MSG_MORE)` (so it leaves with the body rather than in a segment of
    /// its own), then `len` bytes of `file` from `offset` with `sendfile`. What was sent
    /// before a call failed is what the caller hears of; the error comes again on its next
    /// call.
    fn send_head_and_file(
        socket: BorrowedFd<'_>,
        head: &[IoSlice<'_>],
        file: &File,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        let partial = |sent: usize, error: rustix::io::Errno| {
            if sent > 0 {
                Ok(sent)
            } else {
                Err(io::Error::from(error))
            }
        };
        let mut sent = 0;
        for slice in head {
            match rustix::net::send(socket, slice, SendFlags::MORE | SendFlags::NOSIGNAL) {
                Ok(n) => {
                    sent += n;
                    if n < slice.len() {
                        return Ok(sent);
                    }
                }
                Err(e) => return partial(sent, e),
            }
        }
        let mut offset = offset;
        match rustix::fs::sendfile(socket, file, Some(&mut offset), len) {
            Ok(n) => Ok(sent + n),
            Err(e) => partial(sent, e),
        }
    }
}

/// The zero-copy system calls of this platform, if it has them.
pub fn syscalls() -> Option<super::sendfile::Syscalls> {
    #[cfg(target_os = "linux")]
    return linux::syscalls();
    #[cfg(not(target_os = "linux"))]
    return None;
}
