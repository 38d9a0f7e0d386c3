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

/// Failed connects by cause, in any mode (most telling with `--churn`, which connects all the
/// time). Each is also counted in [`ErrorCounts`]: the first three as `connect`, the last
/// three as `client_limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectErrors {
    /// ECONNREFUSED: nothing listening, or the accept queue full with `tcp_abort_on_overflow`;
    /// for a Unix-domain socket also EAGAIN, its listener's backlog full.
    pub refused: u64,
    /// The handshake did not finish in time (SYNs or the final ACK dropped).
    pub timed_out: u64,
    /// Reset or another error on a handshake in progress.
    pub other: u64,
    /// EADDRNOTAVAIL: the client ran out of ephemeral ports (closed connections hold theirs
    /// in TIME_WAIT for 60 s).
    pub no_ports: u64,
    /// EMFILE or ENFILE: the client ran out of descriptors.
    pub no_fds: u64,
    /// ENOBUFS: the client's kernel ran out of memory for sockets.
    pub no_memory: u64,
}

impl ConnectErrors {
    /// Counts a failed `connect` by its errno (EAGAIN comes only from a Unix-domain connect
    /// on Linux: TCP reports a shortage of ports as EADDRNOTAVAIL).
    pub fn count(&mut self, e: &io::Error) {
        use nix::libc::{EADDRNOTAVAIL, EAGAIN, ECONNREFUSED, EMFILE, ENFILE, ENOBUFS, ETIMEDOUT};
        let slot = match e.raw_os_error() {
            Some(ECONNREFUSED) => &mut self.refused,
            Some(EAGAIN) => &mut self.refused,
            Some(ETIMEDOUT) => &mut self.timed_out,
            Some(EADDRNOTAVAIL) => &mut self.no_ports,
            Some(EMFILE) | Some(ENFILE) => &mut self.no_fds,
            Some(ENOBUFS) => &mut self.no_memory,
            _ => &mut self.other,
        };
        *slot += 1;
    }

    pub fn merge(&mut self, other: &ConnectErrors) {
        self.refused += other.refused;
        self.timed_out += other.timed_out;
        self.other += other.other;
        self.no_ports += other.no_ports;
        self.no_fds += other.no_fds;
        self.no_memory += other.no_memory;
    }

    pub fn total(&self) -> u64 {
        self.refused + self.timed_out + self.other + self.no_ports + self.no_fds + self.no_memory
    }
}

/// An error on one connection: its kind and a line saying what happened.
pub(crate) struct ConnError(pub ErrorKind, pub String);

/// Names a failed connect: the client's own limits apart from the server's refusals.
pub(crate) fn connect_error(target: &Target, e: io::Error) -> ConnError {
    use nix::libc::{EADDRNOTAVAIL, EAGAIN, EMFILE, ENFILE, ENOBUFS};
    match e.raw_os_error() {
        // A Unix-domain connect does not wait for room in the listener's queue.
        Some(EAGAIN) if matches!(target, Target::Unix(_)) => ConnError(
            ErrorKind::Connect,
            format!("connect to {target}: the listener's backlog full (EAGAIN): {e}"),
        ),
        Some(EMFILE) | Some(ENFILE) => ConnError(
            ErrorKind::ClientLimit,
            format!("client out of descriptors (EMFILE/ENFILE): {e}; raise ulimit -n"),
        ),
        Some(EADDRNOTAVAIL) => ConnError(
            ErrorKind::ClientLimit,
            format!(
                "client limit, not the server: out of ephemeral ports (EADDRNOTAVAIL) \
                 connecting to {target}; each connection the client closed holds its port in \
                 TIME_WAIT for 60 s (see net.ipv4.ip_local_port_range): {e}"
            ),
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

    #[test]
    fn connect_errors_by_cause() {
        let errno = io::Error::from_raw_os_error;
        let target = Target::parse("127.0.0.1:9").unwrap();
        let mut c = ConnectErrors::default();
        c.count(&errno(nix::libc::ECONNREFUSED));
        c.count(&errno(nix::libc::EADDRNOTAVAIL));
        c.count(&errno(nix::libc::EADDRNOTAVAIL));
        c.count(&errno(nix::libc::ECONNRESET));
        c.count(&errno(nix::libc::EAGAIN));
        assert_eq!((c.refused, c.no_ports, c.other, c.total()), (2, 2, 1, 5));
        let named = connect_error(&target, errno(nix::libc::EADDRNOTAVAIL));
        assert_eq!(named.0, ErrorKind::ClientLimit);
        assert!(
            named.1.contains("client limit, not the server"),
            "{}",
            named.1
        );
    }
}
