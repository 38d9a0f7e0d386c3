//! Phase 1 of a run: opening a thread's connections, paced by `--connect-rate`, a few at a
//! time between polls, at most [`MAX_CONNECTING`] handshakes in flight.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Token};

use super::{State, Worker};
use crate::engine::sock::Sock;
use crate::engine::MAX_CONNECTING;
use crate::errors::{connect_error, ConnError, ErrorKind};
use crate::target::Target;

/// Connects started between two looks at the ready list.
const CONNECT_BATCH: usize = 16;

impl Worker {
    /// Opens the connections `which`, paced, and waits for their handshakes.
    pub(super) fn connect_all(&mut self, which: &[usize], events: &mut Events) {
        let w = &self.shared.workload;
        let interval = w
            .connect_rate
            .map(|r| Duration::from_secs_f64(self.shared.threads as f64 / r));
        let mut next = 0;
        let mut next_at = Instant::now();
        loop {
            let now = Instant::now();
            // A few at a time between polls, so a handshake's completion is seen soon after it
            // happens and the connect latency measures the server, not this loop.
            let mut started = 0;
            while next < which.len()
                && started < CONNECT_BATCH
                && self.connecting < MAX_CONNECTING
                && interval.is_none_or(|_| now >= next_at)
            {
                self.start_connect(which[next], Instant::now());
                next += 1;
                started += 1;
                if let Some(step) = interval {
                    next_at = next_at.max(now - step) + step;
                }
            }
            if next == which.len() && self.connecting == 0 {
                return;
            }
            let mut wait = Duration::from_millis(50);
            if started == CONNECT_BATCH {
                wait = Duration::ZERO;
            }
            if let Some(step) = interval.filter(|_| next < which.len()) {
                wait = wait.min(next_at.saturating_duration_since(now).max(step / 4));
            }
            self.poll_once(events, wait);
            let now = Instant::now();
            for &i in which {
                self.check_handshake(i, now);
            }
        }
    }

    /// The handshake time a connection gets before it counts as a failed connect.
    pub(super) fn connect_timeout(&self) -> Duration {
        self.shared.workload.timeout.max(Duration::from_secs(5))
    }

    /// Fails connection `i` if its handshake has taken longer than [`Self::connect_timeout`].
    pub(super) fn check_handshake(&mut self, i: usize, now: Instant) {
        let timeout = self.connect_timeout();
        if let State::Connecting(since) = self.conns[i].state {
            if now - since > timeout {
                self.result.connect_errors.timed_out += 1;
                let error = ConnError(
                    ErrorKind::Connect,
                    format!("handshake not done after {timeout:?}"),
                );
                self.fail(i, error);
            }
        }
    }

    /// A connect failed (at once or during the handshake): counted by cause, named, closed.
    pub(super) fn connect_failed(&mut self, i: usize, e: std::io::Error) {
        self.result.connect_errors.count(&e);
        let error = connect_error(&self.shared.workload.target, e);
        self.fail(i, error);
    }

    pub(super) fn start_connect(&mut self, i: usize, now: Instant) {
        let target = self.shared.workload.target.clone();
        match Sock::open(&target) {
            Ok(mut sock) => {
                let token = Token(i);
                if let Err(e) = self.poll.registry().register(
                    sock.source(),
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    // Counted, closed and (in the load) noted as lost like any failed connect.
                    let error = ConnError(ErrorKind::ClientLimit, format!("epoll_ctl: {e}"));
                    self.fail(i, error);
                    return;
                }
                sock.set_nodelay(self.shared.workload.nodelay);
                let conn = &mut self.conns[i];
                conn.sock = Some(sock);
                conn.state = State::Connecting(now);
                self.connecting += 1;
                // A Unix-domain connect completes (or fails) inside connect(2) itself.
                if matches!(target, Target::Unix(_)) {
                    self.connected(i, now);
                }
            }
            Err(e) => self.connect_failed(i, e),
        }
    }

    pub(super) fn connected(&mut self, i: usize, now: Instant) {
        let conn = &mut self.conns[i];
        if let State::Connecting(since) = conn.state {
            let ns = (now - since).as_nanos().max(1) as u64;
            self.result.connect.saturating_record(ns);
            conn.state = State::Open;
            conn.last_progress = now;
            self.connecting -= 1;
            if self.churning {
                // One message, timed from the connect: its echo ends the connection.
                if self.sending {
                    self.queue_message(i, since, now);
                    self.flush(i);
                }
                return;
            }
            self.result.connected += 1;
            self.shared.connected.fetch_add(1, Ordering::Relaxed);
            if conn.active {
                self.shared.active_connected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
