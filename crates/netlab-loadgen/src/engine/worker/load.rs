//! Phases 2 and 3 of a run: warmup and the measured window (closed loop: `pipeline` messages
//! in flight per connection; open loop: sends on a schedule whatever the replies do), then the
//! drain, and the timeouts that fail a silent connection in any of them.

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use mio::Events;

use super::{State, Worker};
use crate::engine::{thread_cpu, DRAIN_LIMIT};
use crate::errors::{ConnError, ErrorKind};

/// Open loop: unsent bytes one connection may queue before its next messages wait.
const MAX_UNSENT: usize = 1 << 20;

impl Worker {
    /// Warmup, measured window and drain.
    pub(super) fn load(&mut self, start: Instant, events: &mut Events) {
        let w = self.shared.workload.clone();
        let mut cpu_at_start = None;
        let mut schedule: BinaryHeap<std::cmp::Reverse<(Instant, usize)>> = BinaryHeap::new();
        let interval = w
            .rate
            .map(|r| Duration::from_secs_f64(w.connections as f64 / r));
        // Churn: the connect phase's connections only showed that the server is there; each
        // connection's life (connect, echo, close) starts over inside the load.
        self.churning = w.churn;
        #[cfg(test)]
        self.test_panic(crate::engine::TestPanic::Loading);
        for i in 0..self.conns.len() {
            if !(self.conns[i].active && self.conns[i].state == State::Open) {
                continue;
            }
            if self.churning {
                self.close(i);
                self.conns[i].state = State::Waiting;
                self.start_connect(i, Instant::now());
                continue;
            }
            match interval {
                Some(step) => {
                    // Spread the connections' first sends over one interval.
                    let phase = step.mul_f64(self.conns[i].id as f64 / w.connections as f64);
                    schedule.push(std::cmp::Reverse((start + phase, i)));
                }
                None => {
                    for _ in 0..w.pipeline {
                        self.queue_message(i, start, start);
                    }
                    self.flush(i);
                }
            }
        }
        // Every active connection of this thread failed while connecting: lost from the start.
        self.note_if_all_lost();
        let check_every =
            (w.timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(100));
        let mut next_check = Instant::now() + check_every;
        let mut drain_deadline = None;
        loop {
            let now = Instant::now();
            if cpu_at_start.is_none() && now >= self.measure_start {
                cpu_at_start = Some(thread_cpu());
            }
            if self.sending && now >= self.end {
                self.sending = false;
                self.result.cpu = thread_cpu() - cpu_at_start.unwrap_or_else(thread_cpu);
                // A large response (a 1 GiB file) may take seconds to finish: wait while it
                // makes progress (check_timeouts fails a silent connection), up to a limit.
                drain_deadline = Some(now + DRAIN_LIMIT.max(w.timeout));
            }
            if let Some(deadline) = drain_deadline {
                if self.inflight_total == 0 || now >= deadline {
                    break;
                }
            }
            let mut deferred = Vec::new();
            if self.sending {
                while let Some(std::cmp::Reverse((due, i))) = schedule.peek().copied() {
                    if due > now {
                        break;
                    }
                    schedule.pop();
                    if self.conns[i].state != State::Open {
                        continue;
                    }
                    // A server that falls far behind would make the unsent backlog grow without
                    // bound: hold the message back (its intended time stays, so its latency
                    // still counts the wait) until the socket takes some.
                    let conn = &self.conns[i];
                    if conn.out.len() - conn.out_pos > MAX_UNSENT {
                        deferred.push(std::cmp::Reverse((due, i)));
                        continue;
                    }
                    self.queue_message(i, due, now);
                    self.flush(i);
                    if let Some(step) = interval {
                        schedule.push(std::cmp::Reverse((due + step, i)));
                    }
                }
            }
            let retry = !deferred.is_empty();
            schedule.extend(deferred);
            let mut wake = next_check;
            if self.sending {
                wake = wake.min(self.end);
                if cpu_at_start.is_none() {
                    wake = wake.min(self.measure_start);
                }
                if retry {
                    wake = wake.min(now + Duration::from_millis(1));
                } else if let Some(std::cmp::Reverse((due, _))) = schedule.peek() {
                    wake = wake.min(*due);
                }
            }
            self.poll_once(events, wake.saturating_duration_since(now));
            let now = Instant::now();
            if now >= next_check {
                next_check = now + check_every;
                self.check_timeouts(now, w.timeout);
                // Another engine thread died: the run is over, nothing here will be reported.
                if self.shared.sampled.is_broken() {
                    break;
                }
            }
        }
        // Whatever is still owed after the drain timed out.
        for i in 0..self.conns.len() {
            if !self.conns[i].inflight.is_empty() {
                let conn = &self.conns[i];
                let error = ConnError(
                    ErrorKind::Timeout,
                    format!(
                        "connection {}: {} message(s) still outstanding {:?} after the run",
                        conn.id,
                        conn.inflight.len(),
                        DRAIN_LIMIT.max(w.timeout)
                    ),
                );
                self.fail(i, error);
            }
        }
    }

    fn check_timeouts(&mut self, now: Instant, timeout: Duration) {
        for i in 0..self.conns.len() {
            self.check_handshake(i, now);
            let conn = &self.conns[i];
            if conn.state == State::Open
                && !conn.inflight.is_empty()
                && now - conn.last_progress > timeout
            {
                let error = ConnError(
                    ErrorKind::Timeout,
                    format!(
                        "connection {}: nothing back for {:?} with {} message(s) outstanding",
                        conn.id,
                        timeout,
                        conn.inflight.len()
                    ),
                );
                self.fail(i, error);
            }
        }
    }
}
