//! One engine thread: its connections, one `mio::Poll` over them, and what happens to the bytes
//! that arrive (checked against the echo pattern, or read as HTTP replies). The phases of a run
//! are in [`connect`] (opening the connections) and [`load`] (warmup, window, drain); this file
//! holds the state they share and the per-connection work: read, check, complete, send, close.

mod connect;
mod load;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use mio::event::Event;
use mio::{Events, Poll};

use super::barrier::OnPanic;
use super::http_reply::{HttpReply, Step};
use super::sock::Sock;
use super::{new_histogram, Shared};
use crate::errors::{io_error, ConnError, ConnectErrors, ErrorCounts, ErrorKind};
use crate::workload::Protocol;

/// What one thread measured; the main thread merges them into an `EngineResult`.
pub(super) struct WorkerResult {
    pub(super) messages: u64,
    pub(super) bytes: u64,
    pub(super) latency: Histogram<u64>,
    pub(super) latency_uncorrected: Histogram<u64>,
    pub(super) connect: Histogram<u64>,
    pub(super) connected: usize,
    pub(super) errors: ErrorCounts,
    pub(super) connect_errors: ConnectErrors,
    pub(super) first_error_s: Option<f64>,
    /// When this thread's last active connection failed, if it did before the window's end
    /// (at the load's start when none came up).
    pub(super) all_lost_s: Option<f64>,
    /// The thread has active connections (one with only idle ones has nothing to lose).
    pub(super) carries_load: bool,
    pub(super) examples: Vec<String>,
    pub(super) cpu: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Connecting(Instant),
    Open,
    Closed,
}

/// One message in flight: when it was meant to go and when it went.
#[derive(Clone, Copy)]
struct InFlight {
    intended: Instant,
    sent: Instant,
}

struct Conn {
    id: u32,
    active: bool,
    state: State,
    sock: Option<Sock>,
    out: Vec<u8>,
    out_pos: usize,
    next_seq: u64,
    recv_seq: u64,
    recv_off: usize,
    inflight: VecDeque<InFlight>,
    last_progress: Instant,
    /// HTTP: the reply being read.
    http: HttpReply,
}

pub(super) struct Worker {
    shared: Arc<Shared>,
    index: usize,
    poll: Poll,
    conns: Vec<Conn>,
    buf: Vec<u8>,
    result: WorkerResult,
    inflight_total: usize,
    connecting: usize,
    /// `--churn` and the load phase has started: a connection that completes its echo is
    /// closed and opened again.
    churning: bool,
    /// The connections are up and the load phase has begun (the window's times are set).
    loading: bool,
    /// Churn: connections closed after their echo, to open again once the events in hand are
    /// handled (not while one of them is still being read).
    reopen: Vec<usize>,
    /// Set once the load phase starts: the window and whether sending has stopped.
    measure_start: Instant,
    end: Instant,
    sending: bool,
}

impl Worker {
    pub(super) fn new(shared: Arc<Shared>, index: usize) -> anyhow::Result<Worker> {
        let w = &shared.workload;
        let ids = (index..w.connections + w.idle).step_by(shared.threads);
        let now = Instant::now();
        let conns: Vec<Conn> = ids
            .map(|id| Conn {
                id: id as u32,
                active: id < w.connections,
                state: State::Waiting,
                sock: None,
                out: Vec::new(),
                out_pos: 0,
                next_seq: 0,
                recv_seq: 0,
                recv_off: 0,
                inflight: VecDeque::new(),
                last_progress: now,
                http: HttpReply::default(),
            })
            .collect();
        let carries_load = conns.iter().any(|c| c.active);
        Ok(Worker {
            poll: Poll::new().context("epoll_create failed")?,
            conns,
            buf: vec![0; 256 * 1024],
            result: WorkerResult {
                messages: 0,
                bytes: 0,
                latency: new_histogram(),
                latency_uncorrected: new_histogram(),
                connect: new_histogram(),
                connected: 0,
                errors: ErrorCounts::default(),
                connect_errors: ConnectErrors::default(),
                first_error_s: None,
                all_lost_s: None,
                carries_load,
                examples: Vec::new(),
                cpu: Duration::ZERO,
            },
            inflight_total: 0,
            connecting: 0,
            churning: false,
            loading: false,
            reopen: Vec::new(),
            measure_start: now,
            end: now,
            sending: true,
            shared,
            index,
        })
    }

    pub(super) fn run(mut self) -> anyhow::Result<WorkerResult> {
        let shared = Arc::clone(&self.shared);
        // A panic anywhere below breaks the barriers, so no other thread waits for this one.
        let _guard = OnPanic(|| shared.break_barriers());
        let index = self.index;
        let stopped = |_| anyhow::anyhow!("engine thread {index} stopped: another one failed");
        let active: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].active)
            .collect();
        let idle: Vec<usize> = (0..self.conns.len())
            .filter(|&i| !self.conns[i].active)
            .collect();
        let mut events = Events::with_capacity(1024);
        self.connect_all(&active, &mut events);
        #[cfg(test)]
        self.test_panic(super::TestPanic::Connecting);
        shared.active_done.wait().map_err(stopped)?;
        self.connect_all(&idle, &mut events);
        shared.all_connected.wait().map_err(stopped)?;
        shared.go.wait().map_err(stopped)?;
        let (start, measure_start, end) =
            shared.start.lock().unwrap().expect("start set before go");
        self.measure_start = measure_start;
        self.end = end;
        self.loading = true;
        self.load(start, &mut events);
        shared.sampled.wait().map_err(stopped)?;
        for i in 0..self.conns.len() {
            self.close(i);
        }
        Ok(self.result)
    }

    /// Tests only: engine thread 0 panics in `phase`, to show that a run still ends.
    #[cfg(test)]
    fn test_panic(&self, phase: super::TestPanic) {
        if self.index == 0 && self.shared.panic_in == Some(phase) {
            panic!("engine thread 0 panics on purpose, in the {phase:?} phase");
        }
    }

    fn poll_once(&mut self, events: &mut Events, wait: Duration) {
        match self.poll.poll(events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(e) => {
                self.record_error(ConnError(
                    ErrorKind::ClientLimit,
                    format!("epoll_wait: {e}"),
                ));
                std::thread::sleep(wait);
                return;
            }
        }
        for event in events.iter() {
            self.on_event(event);
        }
        for i in std::mem::take(&mut self.reopen) {
            if self.conns[i].state == State::Waiting && self.sending {
                self.start_connect(i, Instant::now());
            }
        }
    }

    fn on_event(&mut self, event: &Event) {
        let i = event.token().0;
        match self.conns[i].state {
            State::Connecting(_) => {
                let sock = self.conns[i]
                    .sock
                    .as_ref()
                    .expect("connecting has a socket");
                match sock.finish_connect() {
                    Ok(true) => self.connected(i, Instant::now()),
                    Ok(false) => return,
                    Err(e) => {
                        self.connect_failed(i, e);
                        return;
                    }
                }
                if !event.is_readable() {
                    return;
                }
                self.on_readable(i);
            }
            State::Open => {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.on_readable(i);
                }
                if event.is_writable() && self.conns[i].state == State::Open {
                    self.flush(i);
                }
            }
            State::Waiting | State::Closed => {}
        }
    }

    /// Reads until the socket is empty and walks the bytes through the protocol.
    fn on_readable(&mut self, i: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let conn = &mut self.conns[i];
            let Some(sock) = conn.sock.as_mut() else {
                break;
            };
            match sock.read(&mut buf) {
                Ok(0) => {
                    let owed = !conn.inflight.is_empty() || conn.recv_off > 0;
                    let error = if owed {
                        ConnError(
                            ErrorKind::ShortEcho,
                            format!(
                                "connection {}: server closed it with {} message(s) still owed",
                                conn.id,
                                conn.inflight.len()
                            ),
                        )
                    } else {
                        ConnError(
                            ErrorKind::Closed,
                            format!(
                                "connection {} ({}): closed by the server",
                                conn.id,
                                if conn.active { "active" } else { "idle" }
                            ),
                        )
                    };
                    self.fail(i, error);
                    break;
                }
                Ok(n) => {
                    let now = Instant::now();
                    if let Err(error) = self.consume(i, &buf[..n], now) {
                        self.fail(i, error);
                        break;
                    }
                    // A stream socket returns less than asked only when its receive queue is
                    // empty: no need for one more recvfrom just to see EAGAIN (edge-triggered
                    // epoll reports the next arrival as a new edge).
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let id = conn.id;
                    self.fail(i, io_error(id, "recvfrom", e));
                    break;
                }
            }
        }
        self.buf = buf;
        if self.conns[i].state == State::Open {
            self.flush(i);
        }
    }

    /// Walks received bytes through the echo check or the HTTP reply parser.
    fn consume(&mut self, i: usize, data: &[u8], now: Instant) -> Result<(), ConnError> {
        let conn = &mut self.conns[i];
        conn.last_progress = now;
        if !conn.active {
            return Err(ConnError(
                ErrorKind::Mismatch,
                format!(
                    "idle connection {} received {} bytes nobody sent",
                    conn.id,
                    data.len()
                ),
            ));
        }
        match self.shared.workload.protocol {
            Protocol::Echo => self.consume_echo(i, data, now),
            Protocol::Http { .. } => self.consume_http(i, data, now),
        }
    }

    fn consume_echo(&mut self, i: usize, mut data: &[u8], now: Instant) -> Result<(), ConnError> {
        let size = self.shared.workload.size;
        while !data.is_empty() {
            let conn = &mut self.conns[i];
            if conn.inflight.is_empty() {
                return Err(ConnError(
                    ErrorKind::Mismatch,
                    format!(
                        "connection {}: {} bytes arrived beyond every message sent",
                        conn.id,
                        data.len()
                    ),
                ));
            }
            let take = data.len().min(size - conn.recv_off);
            if let Err(m) =
                self.shared
                    .pattern
                    .check(conn.id, conn.recv_seq, conn.recv_off, &data[..take])
            {
                return Err(ConnError(ErrorKind::Mismatch, m.to_string()));
            }
            conn.recv_off += take;
            data = &data[take..];
            if conn.recv_off == size {
                conn.recv_off = 0;
                conn.recv_seq += 1;
                self.complete(i, size as u64, now);
            }
        }
        Ok(())
    }

    fn consume_http(&mut self, i: usize, mut data: &[u8], now: Instant) -> Result<(), ConnError> {
        while !data.is_empty() {
            let conn = &mut self.conns[i];
            if conn.inflight.is_empty() {
                return Err(ConnError(
                    ErrorKind::Http,
                    format!(
                        "connection {}: bytes arrived with no request outstanding",
                        conn.id
                    ),
                ));
            }
            let id = conn.id;
            let step = conn
                .http
                .advance(&mut data)
                .map_err(|e| ConnError(ErrorKind::Http, format!("connection {id}: {e}")))?;
            if let Step::Body { bytes, done } = step {
                // Body bytes count as they arrive inside the window, not when the reply ends:
                // a 1 GiB reply takes seconds and would otherwise land all at once, or after
                // the window, and CPU per GiB would divide by the wrong bytes.
                if now >= self.measure_start && now < self.end {
                    self.result.bytes += bytes;
                }
                if done {
                    self.complete(i, 0, now);
                }
            }
        }
        Ok(())
    }

    /// A message (or reply) came back whole.
    fn complete(&mut self, i: usize, bytes: u64, now: Instant) {
        let conn = &mut self.conns[i];
        let Some(sent) = conn.inflight.pop_front() else {
            return;
        };
        self.inflight_total -= 1;
        self.shared.completed[self.index].fetch_add(1, Ordering::Relaxed);
        let now = if self.churning {
            // The connection's life ends with its close: latency runs from connect to here.
            self.close(i);
            let conn = &mut self.conns[i];
            conn.state = State::Waiting;
            conn.out.clear();
            conn.out_pos = 0;
            self.reopen.push(i);
            Instant::now()
        } else {
            now
        };
        if now >= self.measure_start && now < self.end {
            self.result.messages += 1;
            self.result.bytes += bytes;
            let corrected = (now - sent.intended).as_nanos().max(1) as u64;
            self.result.latency.saturating_record(corrected);
            if self.shared.workload.rate.is_some() {
                let actual = (now - sent.sent).as_nanos().max(1) as u64;
                self.result.latency_uncorrected.saturating_record(actual);
            }
        }
        if self.sending && self.shared.workload.rate.is_none() && !self.churning {
            self.queue_message(i, now, now);
        }
    }

    /// Appends the connection's next message to its output buffer (the caller flushes).
    fn queue_message(&mut self, i: usize, intended: Instant, now: Instant) {
        let shared = &self.shared;
        let conn = &mut self.conns[i];
        if conn.state != State::Open {
            return;
        }
        if conn.out_pos == conn.out.len() {
            conn.out.clear();
            conn.out_pos = 0;
        }
        match shared.workload.protocol {
            Protocol::Echo => shared
                .pattern
                .write_message(conn.id, conn.next_seq, &mut conn.out),
            Protocol::Http { .. } => conn.out.extend_from_slice(&shared.request),
        }
        conn.next_seq += 1;
        if conn.inflight.is_empty() {
            conn.last_progress = now;
        }
        conn.inflight.push_back(InFlight {
            intended,
            sent: now,
        });
        self.inflight_total += 1;
    }

    /// Writes what the connection has queued, until done or the socket buffer is full.
    fn flush(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let Some(sock) = conn.sock.as_mut() else {
            return;
        };
        while conn.out_pos < conn.out.len() {
            match sock.write(&conn.out[conn.out_pos..]) {
                Ok(n) => conn.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let id = conn.id;
                    self.fail(i, io_error(id, "sendto", e));
                    return;
                }
            }
        }
        conn.out.clear();
        conn.out_pos = 0;
    }

    /// Closes connection `i` and counts its error.
    fn fail(&mut self, i: usize, error: ConnError) {
        self.record_error(error);
        self.close(i);
        if self.sending && self.loading {
            self.note_if_all_lost();
        }
    }

    /// The last of this thread's active connections is gone: nothing more will be measured
    /// here (a failed connection is not reopened), so the time is kept, once.
    fn note_if_all_lost(&mut self) {
        if self.result.carries_load
            && self.result.all_lost_s.is_none()
            && self
                .conns
                .iter()
                .all(|c| !c.active || c.state == State::Closed)
        {
            self.result.all_lost_s = Some(self.seconds_into_window(Instant::now()));
        }
    }

    /// Seconds from the start of the measured window to `now` (negative: before it).
    fn seconds_into_window(&self, now: Instant) -> f64 {
        if now >= self.measure_start {
            (now - self.measure_start).as_secs_f64()
        } else {
            -(self.measure_start - now).as_secs_f64()
        }
    }

    fn close(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        if let State::Connecting(_) = conn.state {
            self.connecting -= 1;
        }
        if let Some(mut sock) = conn.sock.take() {
            let _ = self.poll.registry().deregister(sock.source());
        }
        conn.state = State::Closed;
        self.inflight_total -= conn.inflight.len();
        conn.inflight.clear();
    }

    fn record_error(&mut self, error: ConnError) {
        self.result.errors.add(error.0);
        // During the load, say when: a server that died mid-run shows as the moment its
        // connections failed, with the figures up to then.
        let mut when = String::new();
        if self.loading {
            let at = self.seconds_into_window(Instant::now());
            let first = self.result.first_error_s.get_or_insert(at);
            *first = first.min(at);
            let window = (self.end - self.measure_start).as_secs_f64();
            when = if at < 0.0 {
                format!(" (in the warmup, {:.3} s before the window)", -at)
            } else if at < window {
                format!(" ({at:.3} s into the {window:.3} s window)")
            } else {
                " (in the drain after the window)".to_string()
            };
        }
        if self.result.examples.len() < 8 {
            self.result
                .examples
                .push(format!("{}: {}{when}", error.0.name(), error.1));
        }
    }
}
