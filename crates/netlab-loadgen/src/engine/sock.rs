//! One connection's socket for mio: TCP or Unix-domain, behind one type, so the worker never
//! asks which.

use std::io::{self, Read, Write};

use crate::target::Target;

/// A mio stream: TCP or Unix.
pub(crate) enum Sock {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Sock {
    pub(crate) fn open(target: &Target) -> io::Result<Sock> {
        match target {
            Target::Tcp(addr) => mio::net::TcpStream::connect(*addr).map(Sock::Tcp),
            Target::Unix(path) => mio::net::UnixStream::connect(path).map(Sock::Unix),
        }
    }

    pub(crate) fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Sock::Tcp(s) => s,
            Sock::Unix(s) => s,
        }
    }

    /// After a writable event on a connecting socket: `Ok(true)` once the handshake is done.
    pub(crate) fn finish_connect(&self) -> io::Result<bool> {
        let (error, peer) = match self {
            Sock::Tcp(s) => (s.take_error()?, s.peer_addr().map(|_| ())),
            Sock::Unix(s) => (s.take_error()?, s.peer_addr().map(|_| ())),
        };
        if let Some(e) = error {
            return Err(e);
        }
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn set_nodelay(&self, on: bool) {
        if let Sock::Tcp(s) = self {
            let _ = s.set_nodelay(on);
        }
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
