//! Bytes from this process to a socket, with the flags that matter: `send(2)` with
//! `MSG_NOSIGNAL` (a closed peer is EPIPE, not a SIGPIPE) and, for a head with a body behind
//! it, `MSG_MORE`. The file-to-socket part, `sendfile(2)` versus `pread(2)` + `write(2)`, is
//! the lesson and lives in the lab file itself (labs/06-fileserve/main.rs).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::socket::{send, MsgFlags};

/// One `sendfile(2)` call moves at most this many bytes (Linux caps `count` at 2 GiB - 4 KiB).
pub const SENDFILE_MAX: u64 = 0x7fff_f000;

/// What one step of a transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// This many bytes went into the socket (more than zero).
    Bytes(usize),
    /// EAGAIN (or EINTR): the socket buffer is full; wait for EPOLLOUT.
    WouldBlock,
    /// The file ended before the range did: it was truncated under us.
    FileEnded,
}

/// `send(socket, bytes, MSG_NOSIGNAL [| MSG_MORE])`. With `more`, the kernel holds a short
/// head back so it shares a TCP segment with the body that follows (TCP_CORK for one call).
pub fn send_bytes(socket: BorrowedFd, bytes: &[u8], more: bool) -> io::Result<Moved> {
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if more {
        flags |= MsgFlags::from_bits_retain(libc::MSG_MORE);
    }
    match send(socket.as_raw_fd(), bytes, flags) {
        Ok(n) => Ok(Moved::Bytes(n)),
        Err(Errno::EAGAIN) | Err(Errno::EINTR) => Ok(Moved::WouldBlock),
        Err(e) => Err(e.into()),
    }
}
