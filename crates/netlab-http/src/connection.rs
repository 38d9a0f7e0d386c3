//! One HTTP/1.1 connection's bookkeeping, apart from moving the bytes: the request bytes read
//! so far, the response being sent, the deadlines, and the lingering close. The server's loop
//! reads with [`Connection::read_requests`], takes answers from [`Connection::next_response`],
//! sends them its own way, and reports back with [`Connection::sent`].
//!
//! Lingering close (nginx's `lingering_close`): `close(2)` on a socket whose receive queue
//! still holds bytes makes the kernel send a RST instead of a FIN (RFC 1122 §4.2.2.13, and
//! RFC 9112 §9.6 warns of it), and a RST that reaches the client before it has read the answer
//! throws the answer away: a client that sent an oversized head with more behind it would see
//! "connection reset", not its 414. So a connection the server ends is first shut down for
//! writing (the FIN follows the answer), then read and discarded until the client closes too,
//! for at most [`LINGER_TIME`] and [`LINGER_BYTES`], and only then closed.

use std::io::{self, Read};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use netlab_core::Stream;

use crate::request::{parse_head, Parsed, MAX_HEAD};
use crate::respond::{respond, short_response, Response, Site};

/// How long a closing connection is read from at most (nginx: `lingering_time 30s`, with a
/// 5 s `lingering_timeout` between reads).
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// How many bytes a closing connection may still send before it is closed anyway.
pub const LINGER_BYTES: u64 = 4 << 20;

/// The three deadlines: a slow client must not hold a connection (its fd and file) for ever.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A request head must be complete this long after its first byte (else 408).
    pub header: Duration,
    /// A response that makes no progress this long is dropped.
    pub send: Duration,
    /// An idle keep-alive connection is closed after this long.
    pub idle: Duration,
}

impl Timeouts {
    /// Connections are checked this often: a quarter of the shortest timeout, 50 ms to 1 s.
    pub fn sweep_every(&self) -> Duration {
        (self.header.min(self.send).min(self.idle) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// What [`Connection::next_response`] found in the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A response is ready in [`Connection::response`]: send it. `true` if it answers a
    /// request (a bad head gets an answer too, but is no request).
    Respond { request: bool },
    /// No complete request yet: wait for more bytes.
    Wait,
    /// The client closed and no request is left: close.
    Close,
}

/// Which deadline a connection passed.
#[derive(Debug, PartialEq, Eq)]
pub enum Expired {
    /// The head never completed: a 408 is due (best effort), then close.
    Header,
    /// The response or the idle wait took too long: close.
    SendOrIdle,
    /// A lingering connection's time is up: close, it was answered.
    Lingering,
}

/// One connection, as HTTP sees it.
pub struct Connection {
    pub stream: Stream,
    /// The response being sent, if any.
    pub response: Option<Response>,
    /// Request bytes read but not yet parsed: a partial head, or pipelined requests.
    input: Vec<u8>,
    /// The client shut down its sending side (read returned 0).
    peer_closed: bool,
    /// Answered and shut down for writing: input is thrown away until this deadline.
    linger_until: Option<Instant>,
    discarded: u64,
    /// Since when this connection has waited for a request (keep-alive idle timeout).
    idle_since: Instant,
    /// When the first byte of the current, incomplete head arrived (header timeout).
    head_started: Option<Instant>,
    /// When response bytes last went out (the send timeout): the sender sets it.
    pub last_progress: Instant,
}

impl Connection {
    pub fn new(stream: Stream) -> Connection {
        let now = Instant::now();
        Connection {
            stream,
            response: None,
            input: Vec::new(),
            peer_closed: false,
            linger_until: None,
            discarded: 0,
            idle_since: now,
            head_started: None,
            last_progress: now,
        }
    }

    /// One `recvfrom` into the input buffer, which never grows past the head limit (then
    /// [`next_response`](Self::next_response) answers 431). EAGAIN and EINTR are no error.
    pub fn read_requests(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let room = (MAX_HEAD + 1024)
            .saturating_sub(self.input.len())
            .min(chunk.len());
        if room == 0 {
            return Ok(());
        }
        match (&self.stream).read(&mut chunk[..room]) {
            Ok(0) => self.peer_closed = true,
            Ok(n) => {
                if self.input.is_empty() {
                    self.head_started = Some(Instant::now());
                }
                self.input.extend_from_slice(&chunk[..n]);
            }
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Parses the next request in the input and puts its answer in [`response`](Self::response).
    pub fn next_response(&mut self, site: &Site) -> Next {
        let (response, request) = match parse_head(&self.input) {
            Parsed::Incomplete if self.peer_closed => return Next::Close,
            Parsed::Incomplete => return Next::Wait,
            Parsed::Complete(request, used) => {
                self.input.drain(..used);
                (respond(site, &request), true)
            }
            // A bad head: say why, and close (we cannot tell where the next request starts).
            Parsed::Error(status) => {
                self.input.clear();
                (short_response(status, &[], true, false), false)
            }
        };
        self.head_started = (!self.input.is_empty()).then(Instant::now);
        self.response = Some(response);
        Next::Respond { request }
    }

    /// The response is sent. Returns true to keep the connection for the next request; false
    /// when it ends: then it is lingering, unless the client has closed already.
    pub fn sent(&mut self) -> bool {
        let keep_alive = self.response.take().is_some_and(|r| r.keep_alive);
        if keep_alive {
            self.idle_since = Instant::now();
        } else if !self.peer_closed {
            let _ = self.stream.shutdown(Shutdown::Write); // the FIN follows the answer
            self.input = Vec::new();
            self.linger_until = Some(Instant::now() + LINGER_TIME);
        }
        keep_alive
    }

    /// Is the connection answered and only waiting for the client to close?
    pub fn is_lingering(&self) -> bool {
        self.linger_until.is_some()
    }

    /// One read of a lingering connection, thrown away. Returns false when it is time to
    /// close: the client closed (or reset), or the bounds are passed.
    pub fn linger(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match (&self.stream).read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => self.discarded += n as u64,
            Err(e) if is_transient(&e) => {}
            Err(_) => return false, // reset by the client: nothing left to protect
        }
        self.discarded <= LINGER_BYTES && self.linger_until.is_some_and(|t| Instant::now() < t)
    }

    /// Has the connection passed a deadline?
    pub fn expired(&self, now: Instant, timeouts: &Timeouts) -> Option<Expired> {
        let passed = |since: Instant, limit: Duration| now.saturating_duration_since(since) > limit;
        match (self.linger_until, &self.response, self.head_started) {
            (Some(until), _, _) => (now > until).then_some(Expired::Lingering),
            (None, Some(_), _) => {
                passed(self.last_progress, timeouts.send).then_some(Expired::SendOrIdle)
            }
            (None, None, Some(started)) => {
                passed(started, timeouts.header).then_some(Expired::Header)
            }
            (None, None, None) => {
                passed(self.idle_since, timeouts.idle).then_some(Expired::SendOrIdle)
            }
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
