//! The error counters: every way a connection can go wrong, by kind ([`ErrorKind`]), summed
//! over a run ([`ErrorCounts`]), and the one place that names a failed `connect` or I/O call.
//! Any error makes a run fail; the client's own limits are told apart from the server's faults.

use std::io;

use serde::{Deserialize, Serialize};

use crate::target::Target;

/// Errors by kind. Any of them makes the run fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// An echoed byte differed from the byte sent (or bytes arrived that nobody sent).
    pub mismatch: u64,
    /// The server closed the connection with part of an echo still owed.
    pub short_echo: u64,
    /// ECONNRESET, EPIPE or another I/O error on an open connection.
    pub reset: u64,
    /// Messages outstanding and nothing came back within `timeout`.
    pub timeout: u64,
    /// The server refused or never completed a handshake.
    pub connect: u64,
    /// The server closed a connection that owed nothing (an idle one, say).
    pub closed: u64,
    /// HTTP: a status other than 200, or a reply that is not HTTP/1.1 with Content-Length.
    pub http: u64,
    /// The client's own limits: out of descriptors (EMFILE, ENFILE) or ephemeral ports
    /// (EADDRNOTAVAIL). Not the server's fault.
    pub client_limit: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Mismatch,
    ShortEcho,
    Reset,
    Timeout,
    Connect,
    Closed,
    Http,
    ClientLimit,
}

impl ErrorCounts {
    pub fn add(&mut self, kind: ErrorKind) {
        *self.slot(kind) += 1;
    }

    fn slot(&mut self, kind: ErrorKind) -> &mut u64 {
        match kind {
            ErrorKind::Mismatch => &mut self.mismatch,
            ErrorKind::ShortEcho => &mut self.short_echo,
            ErrorKind::Reset => &mut self.reset,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Connect => &mut self.connect,
            ErrorKind::Closed => &mut self.closed,
            ErrorKind::Http => &mut self.http,
            ErrorKind::ClientLimit => &mut self.client_limit,
        }
    }

    pub fn merge(&mut self, other: &ErrorCounts) {
        for (kind, n) in other.by_kind() {
            *self.slot(kind) += n;
        }
    }

    pub fn by_kind(&self) -> [(ErrorKind, u64); 8] {
        [
            (ErrorKind::Mismatch, self.mismatch),
            (ErrorKind::ShortEcho, self.short_echo),
            (ErrorKind::Reset, self.reset),
            (ErrorKind::Timeout, self.timeout),
            (ErrorKind::Connect, self.connect),
            (ErrorKind::Closed, self.closed),
            (ErrorKind::Http, self.http),
            (ErrorKind::ClientLimit, self.client_limit),
        ]
    }

    pub fn total(&self) -> u64 {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }

    /// `none`, or `mismatch=1 timeout=3`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .by_kind()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| format!("{}={n}", kind.name()))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" ")
        }
    }
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::ShortEcho => "short_echo",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Closed => "closed",
            ErrorKind::Http => "http",
            ErrorKind::ClientLimit => "client_limit",
        }
    }
}

/// An error on one connection: its kind and a line saying what happened.
pub(crate) struct ConnError(pub ErrorKind, pub String);

/// Names a failed connect: the client's own limits apart from the server's refusals.
pub(crate) fn connect_error(target: &Target, e: io::Error) -> ConnError {
    use nix::libc::{EADDRNOTAVAIL, EMFILE, ENFILE, ENOBUFS};
    match e.raw_os_error() {
        Some(EMFILE) | Some(ENFILE) => ConnError(
            ErrorKind::ClientLimit,
            format!("client out of descriptors (EMFILE/ENFILE): {e}; raise ulimit -n"),
        ),
        Some(EADDRNOTAVAIL) => ConnError(
            ErrorKind::ClientLimit,
            format!("client out of ephemeral ports (EADDRNOTAVAIL) connecting to {target}: {e}"),
        ),
        Some(ENOBUFS) => ConnError(ErrorKind::ClientLimit, format!("client out of memory: {e}")),
        _ => ConnError(ErrorKind::Connect, format!("connect to {target}: {e}")),
    }
}

pub(crate) fn io_error(id: u32, call: &str, e: io::Error) -> ConnError {
    // ECONNRESET and EPIPE mostly; any other error on an open socket ends it the same way.
    ConnError(ErrorKind::Reset, format!("connection {id}: {call}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_sum_and_print() {
        let mut e = ErrorCounts::default();
        assert_eq!(e.summary(), "none");
        e.add(ErrorKind::Timeout);
        e.add(ErrorKind::Mismatch);
        assert_eq!(e.total(), 2);
        assert_eq!(e.summary(), "mismatch=1 timeout=1");
    }
}
