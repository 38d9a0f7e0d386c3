//! The echo protocol, as intent: a connection reads, writes, and says what it wants next. Each
//! server translates [`Want`] into its own mechanism's flags (fd sets, `POLLIN`, `EPOLLOUT`...).

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use crate::listener::Stream;
use crate::server::Stats;

/// How many bytes one `read` asks for. Servers keep one scratch buffer of this size per loop
/// (not per connection), so an idle connection costs only its bookkeeping.
pub const READ_CHUNK: usize = 64 * 1024;

/// An unsent tail larger than this is given back to the allocator once it has drained, so one
/// burst does not pin memory for the rest of the connection's life.
const KEEP_CAPACITY: usize = 64 * 1024;

/// What one `read` or `write` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Moved this many bytes (0 only from `write_once` with nothing to send).
    Moved(usize),
    /// EAGAIN: the socket is non-blocking and not ready; come back when the wait call says so.
    WouldBlock,
    /// `read` returned 0: the peer shut down its sending side. (Never returned by `write_once`.)
    Eof,
}

/// When [`EchoConn::drain`] stops reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// The textbook rule: read until `read` says EAGAIN.
    ToEagain,
    /// Stop after a short read (fewer bytes than asked for), or at EAGAIN.
    UntilShortRead,
}

/// What a connection is waiting for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Nothing to send: wait until there is something to read.
    Read,
    /// Has unsent bytes and room for more: wait for either.
    ReadWrite,
    /// Has reached the unsent cap, or the peer finished sending: only drain.
    Write,
    /// The peer finished and everything was echoed: close it.
    Close,
}

/// One echo connection: the socket and the bytes read but not yet written back.
pub struct EchoConn {
    pub stream: Stream,
    unsent: VecDeque<u8>,
    peer_finished: bool,
    max_pending: usize,
    /// Bytes echoed so far (written back to the peer).
    pub bytes_echoed: u64,
}

impl EchoConn {
    /// `max_pending`: stop reading while this many bytes wait to be sent (see [`Want::Write`]);
    /// at least 1, or the connection could never read.
    pub fn new(stream: Stream, max_pending: usize) -> EchoConn {
        EchoConn {
            stream,
            unsent: VecDeque::new(),
            peer_finished: false,
            max_pending: max_pending.max(1),
            bytes_echoed: 0,
        }
    }

    /// One `read(2)` into `scratch`; the bytes join the unsent tail. Retries EINTR.
    /// An error (ECONNRESET, ...) means the connection is over.
    pub fn read_once(&mut self, scratch: &mut [u8]) -> io::Result<Step> {
        loop {
            return match (&self.stream).read(scratch) {
                Ok(0) => {
                    self.peer_finished = true;
                    Ok(Step::Eof)
                }
                Ok(n) => {
                    self.unsent.extend(&scratch[..n]);
                    Ok(Step::Moved(n))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// One `write(2)` of the unsent tail (a partial write keeps the rest). Retries EINTR.
    /// With nothing unsent it makes no syscall and returns `Moved(0)`.
    /// An error (EPIPE, ECONNRESET, ...) means the connection is over.
    pub fn write_once(&mut self) -> io::Result<Step> {
        if self.unsent.is_empty() {
            return Ok(Step::Moved(0));
        }
        loop {
            let (front, _) = self.unsent.as_slices();
            return match (&self.stream).write(front) {
                Ok(n) => {
                    self.unsent.drain(..n);
                    self.bytes_echoed += n as u64;
                    if self.unsent.is_empty() && self.unsent.capacity() > KEEP_CAPACITY {
                        self.unsent = VecDeque::new();
                    }
                    Ok(Step::Moved(n))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// The level-triggered step (select, poll, epoll without EPOLLET): one `read` if the wait
    /// call said readable and the cap allows, then one `write` of whatever is pending, at once,
    /// since a socket is usually writable (this saves a trip through the wait call). Reading
    /// once is enough: unread bytes make the next wait return again. Echoed bytes are counted
    /// in `stats`. An error (ECONNRESET, EPIPE, ...) means the connection is over.
    pub fn step(&mut self, readable: bool, scratch: &mut [u8], stats: &Stats) -> io::Result<Want> {
        if readable && self.want() != Want::Write {
            self.read_once(scratch)?;
        }
        if let Step::Moved(n) = self.write_once()? {
            Stats::add(&stats.bytes, n as u64);
        }
        Ok(self.want())
    }

    /// The edge-triggered step (EPOLLET, mio): alternate reads and writes until both sides are
    /// stuck: the read side at EAGAIN (or at the unsent cap, or end of file), the write side at
    /// EAGAIN (or with nothing left to send). An edge is reported once: whatever is left behind
    /// here, no later wait will mention. Echoed bytes are counted in `stats`.
    ///
    /// With [`Drain::UntilShortRead`] the read side also counts as stuck after a read that
    /// returned less than `scratch` holds: the socket was empty at that moment, and a byte
    /// arriving after it raises a new edge (Netty's rule; `tests/et_short_read.rs`). That saves
    /// the `recvfrom` that would only say EAGAIN.
    pub fn drain(&mut self, scratch: &mut [u8], stats: &Stats, rule: Drain) -> io::Result<Want> {
        let mut read_blocked = false;
        loop {
            let may_read = matches!(self.want(), Want::Read | Want::ReadWrite);
            if may_read && !read_blocked {
                read_blocked = match self.read_once(scratch)? {
                    Step::WouldBlock => true,
                    Step::Moved(n) => rule == Drain::UntilShortRead && n < scratch.len(),
                    Step::Eof => false, // want() is Write or Close from here on
                };
            }
            let wrote = self.write_once()?;
            if let Step::Moved(n) = wrote {
                Stats::add(&stats.bytes, n as u64);
            }
            let want = self.want();
            let reading_done = read_blocked || !matches!(want, Want::Read | Want::ReadWrite);
            let writing_done = self.pending() == 0 || wrote == Step::WouldBlock;
            if want == Want::Close || (reading_done && writing_done) {
                return Ok(want);
            }
        }
    }

    /// Bytes read but not yet written back.
    pub fn pending(&self) -> usize {
        self.unsent.len()
    }

    /// What to wait for next.
    pub fn want(&self) -> Want {
        match (self.peer_finished, self.pending()) {
            (true, 0) => Want::Close,
            (true, _) => Want::Write,
            (false, n) if n >= self.max_pending => Want::Write,
            (false, 0) => Want::Read,
            (false, _) => Want::ReadWrite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn pair(max_pending: usize) -> (EchoConn, UnixStream) {
        let (server, client) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        (EchoConn::new(Stream::Unix(server), max_pending), client)
    }

    #[test]
    fn echoes_and_reports_intent() {
        let (mut conn, mut client) = pair(1 << 20);
        let mut scratch = vec![0; READ_CHUNK];
        assert_eq!(conn.read_once(&mut scratch).unwrap(), Step::WouldBlock);
        assert_eq!(conn.want(), Want::Read);

        client.write_all(b"hello").unwrap();
        assert_eq!(conn.read_once(&mut scratch).unwrap(), Step::Moved(5));
        assert_eq!(conn.want(), Want::ReadWrite);
        assert_eq!(conn.write_once().unwrap(), Step::Moved(5));
        assert_eq!(conn.want(), Want::Read);
        let mut back = [0; 5];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");

        client.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(conn.read_once(&mut scratch).unwrap(), Step::Eof);
        assert_eq!(conn.want(), Want::Close);
        assert_eq!(conn.bytes_echoed, 5);
    }

    #[test]
    fn stops_reading_at_the_cap_and_keeps_the_unsent_tail() {
        let (mut conn, mut client) = pair(100_000);
        let mut scratch = vec![0; READ_CHUNK];
        let message: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let mut client = client.try_clone().unwrap();
            let message = message.clone();
            std::thread::spawn(move || client.write_all(&message))
        };
        // The client never reads: the server fills the socket, then stops at the cap.
        while conn.want() != Want::Write {
            if conn.read_once(&mut scratch).unwrap() == Step::WouldBlock {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            while conn.write_once().unwrap() != Step::WouldBlock && conn.pending() > 0 {}
        }
        assert!(conn.pending() >= 100_000 && conn.pending() < 100_000 + READ_CHUNK);

        // Now the client reads; everything comes back in order.
        let reader = std::thread::spawn(move || {
            let mut back = vec![0; 2_000_000];
            client.read_exact(&mut back).map(|_| back)
        });
        while conn.bytes_echoed < message.len() as u64 {
            if conn.want() != Want::Write {
                conn.read_once(&mut scratch).unwrap();
            }
            if conn.write_once().unwrap() == Step::WouldBlock {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        writer.join().unwrap().unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), message);
    }
}
