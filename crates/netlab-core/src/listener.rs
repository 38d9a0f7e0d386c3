//! The listening socket and the connected stream, for TCP and Unix-domain sockets alike.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

/// A bound, listening socket.
pub enum Listener {
    Tcp(TcpListener),
    /// The path is removed again when the listener is dropped.
    Unix(UnixListener, PathBuf),
}

/// One accepted connection. Reads and writes go straight to the socket: std's `read` shows in
/// strace as `recvfrom(fd, buf, len, 0, NULL, NULL)` and `write` as `sendto(..., MSG_NOSIGNAL)`,
/// for TCP and Unix sockets alike.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    /// Listens on a TCP address: `socket(2)`, `setsockopt(SO_REUSEADDR)` (so a restart binds the
    /// same port at once, even with connections in TIME_WAIT), `bind(2)`, `listen(2)` with
    /// `backlog`. std's `TcpListener::bind` would hard-code a backlog of 128.
    pub fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<Listener> {
        Self::bind_tcp_with(addr, backlog, false)
    }

    /// [`bind_tcp`](Self::bind_tcp) with `setsockopt(SO_REUSEPORT)` before `bind(2)`: every
    /// listener bound so on one port joins a group, and the kernel spreads new connections over
    /// the group by a hash of their addresses (socket(7)). echo-reuseport binds one per thread.
    pub fn bind_tcp_reuse_port(addr: SocketAddr, backlog: i32) -> io::Result<Listener> {
        Self::bind_tcp_with(addr, backlog, true)
    }

    fn bind_tcp_with(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<Listener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(reuse_port)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        Ok(Listener::Tcp(socket.into()))
    }

    /// Listens on a Unix-domain socket at `path`: `socket(AF_UNIX)`, `bind(2)`, `listen(2)`.
    ///
    /// `bind` fails with EADDRINUSE whenever the path exists. If it is a socket file nobody
    /// listens on any more (left by a killed server), it is removed and bound again; whether
    /// someone listens is found out by connecting, which a live server sees as one connection.
    /// A path that is not a socket is never removed.
    pub fn bind_unix(path: &Path, backlog: i32) -> io::Result<Listener> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        let address = SockAddr::unix(path)?;
        if let Err(e) = socket.bind(&address) {
            let stale_socket = e.kind() == io::ErrorKind::AddrInUse
                && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
                && UnixStream::connect(path).is_err();
            if !stale_socket {
                return Err(e);
            }
            std::fs::remove_file(path)?;
            socket.bind(&address)?;
        }
        socket.listen(backlog)?;
        Ok(Listener::Unix(socket.into(), path.to_path_buf()))
    }

    /// Accepts one connection as the listener's mode has it (blocking unless
    /// [`set_nonblocking`](Self::set_nonblocking) was called): `accept4(fd, ..., SOCK_CLOEXEC)`.
    /// The new socket is blocking.
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }

    /// Accepts one connection whose socket is already non-blocking, in one syscall:
    /// `accept4(fd, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK)`. Returns `WouldBlock` (EAGAIN) when
    /// the accept queue is empty and the listener is non-blocking.
    pub fn accept_nonblocking(&self) -> io::Result<Stream> {
        let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        // SAFETY: the listening fd is valid for as long as `self` lives; NULL address and length
        // pointers are allowed by accept4(2) and mean "do not report the peer".
        let fd = unsafe {
            libc::accept4(
                self.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                flags,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        Ok(self.stream_from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Wraps a connection accepted from this listener by other means (io_uring's accept) as a
    /// [`Stream`] of the listener's kind.
    pub fn stream_from(&self, accepted: OwnedFd) -> Stream {
        match self {
            Listener::Tcp(_) => Stream::Tcp(TcpStream::from(accepted)),
            Listener::Unix(..) => Stream::Unix(UnixStream::from(accepted)),
        }
    }

    /// `ioctl(FIONBIO)`: should `accept` return EAGAIN instead of waiting?
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(nonblocking),
            Listener::Unix(l, _) => l.set_nonblocking(nonblocking),
        }
    }

    /// Where clients connect: `127.0.0.1:7000`, `[::1]:7000` or `unix:/tmp/echo.sock`.
    pub fn address(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|e| format!("?({e})"), |a| a.to_string()),
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    /// Connects to this listener and closes the connection at once. A thread blocked in
    /// `accept(2)` only wakes for a connection (signal handlers are installed with SA_RESTART,
    /// so a signal restarts the call), so this is how a stop request reaches it.
    pub fn knock(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(_) => {
                TcpStream::connect_timeout(&self.client_address()?, Duration::from_secs(1))
                    .map(drop)
            }
            Listener::Unix(_, path) => UnixStream::connect(path).map(drop),
        }
    }

    /// Where a client on this machine connects to a TCP listener: its address, with loopback in
    /// place of a wildcard (`0.0.0.0` becomes `127.0.0.1`, `::` becomes `::1`).
    pub fn client_address(&self) -> io::Result<SocketAddr> {
        let Listener::Tcp(l) = self else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a TCP listener",
            ));
        };
        let mut addr = l.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Ok(addr)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l, _) => l.as_fd(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Stream {
    /// `ioctl(FIONBIO)` on the connected socket.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(nonblocking),
            Stream::Unix(s) => s.set_nonblocking(nonblocking),
        }
    }

    /// `shutdown(2)`: with `Shutdown::Both`, a thread blocked reading this socket wakes with end
    /// of file.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// A second handle on the same socket (`fcntl(F_DUPFD_CLOEXEC)`).
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(buf),
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// Is this `accept(2)` error "out of descriptors or memory" (EMFILE, ENFILE, ENOBUFS, ENOMEM)?
/// The pending connection stays in the accept queue, so the listener stays readable: a loop
/// that keeps asking spins at 100% CPU. See [`AcceptPause`].
pub fn is_fd_exhausted(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// What an event loop does when `accept(2)` fails with EMFILE: stop watching the listener until a
/// connection closes (an fd is free again) or [`AcceptPause::BACKOFF`] has passed (fds may free
/// up elsewhere), so the loop sleeps in its wait call instead of spinning.
#[derive(Debug, Default)]
pub struct AcceptPause {
    until: Option<Instant>,
    /// Set from the first EMFILE until a connection closes: one log line per episode.
    in_episode: bool,
}

impl AcceptPause {
    /// How long the listener is ignored at most after EMFILE.
    pub const BACKOFF: Duration = Duration::from_millis(100);

    /// accept() said EMFILE: ignore the listener for a while. The first time in an episode it
    /// says so on stderr as `PROGRAM: accept4: ERROR; ...` (once, not ten times a second while
    /// the limit holds).
    pub fn pause(&mut self, program: &str, error: &io::Error) {
        self.until = Some(Instant::now() + Self::BACKOFF);
        if !std::mem::replace(&mut self.in_episode, true) {
            eprintln!(
                "{program}: accept4: {error}; retrying when a connection closes, or in {:?}",
                Self::BACKOFF
            );
        }
    }

    /// A connection closed, so an fd is free: accept again.
    pub fn resume(&mut self) {
        self.until = None;
        self.in_episode = false;
    }

    /// Should the listener be left out of this wait? Ends the pause once its time is up.
    pub fn is_paused(&mut self) -> bool {
        match self.until {
            Some(t) if Instant::now() < t => true,
            _ => {
                self.until = None;
                false
            }
        }
    }

    /// The wait call's timeout in milliseconds: -1 (no timeout) unless paused, in which case the
    /// time left, so the loop comes back to try accept() again.
    pub fn wait_timeout_ms(&self) -> i32 {
        match self.until {
            None => -1,
            Some(t) => t.saturating_duration_since(Instant::now()).as_millis() as i32 + 1,
        }
    }
}
