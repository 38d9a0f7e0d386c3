//! The engine: many connections from a few threads, each thread one `mio::Poll` loop over
//! non-blocking sockets.
//!
//! A run has three phases, the same in every thread:
//!
//! 1. connect: the active connections first, then (after every thread is done with its active
//!    ones) the idle ones, paced by `--connect-rate` and at most [`MAX_CONNECTING`] handshakes in
//!    flight per thread. Active first, so that a server with a descriptor limit (select and
//!    FD_SETSIZE) refuses idle connections rather than the ones that carry the load;
//! 2. load: warmup, then the measured window. Closed loop keeps `pipeline` messages in flight
//!    per connection; open loop sends on a schedule (`rate` messages/s in total) whatever the
//!    replies do, and latency is taken from the intended send time; churn closes each active
//!    connection (opened in phase 1 only to see that the server is there) and then, per
//!    connection, connects, sends one message, closes on its echo and connects again;
//! 3. drain: no new messages; what is in flight may finish as long as it makes progress (a
//!    connection silent for `timeout` fails, as during the run), for at most [`DRAIN_LIMIT`].
//!
//! Only messages that complete inside the measured window count for throughput and latency;
//! every error counts, whenever it happens.
//!
//! The parts, each in its own file: [`crate::workload`] (what a run is and its checks),
//! [`crate::errors`] (the counters), `engine/worker.rs` (one thread's connections and bytes,
//! with its phases in `worker/connect.rs` and `worker/load.rs`), `engine/http_reply.rs` (HTTP
//! reply reading), `engine/sock.rs` (TCP or Unix socket), `engine/progress.rs` (the live
//! line) and `engine/barrier.rs` (the barriers a panicking thread breaks). This file starts
//! the threads, keeps them in step at the window's edges and merges what they measured.

mod barrier;
mod http_reply;
mod progress;
mod sock;
mod worker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use crate::errors::{ConnectErrors, ErrorCounts, ErrorKind};
pub use crate::workload::{BadArgument, Protocol, Workload};

use crate::frame::{Pattern, HEADER};
use barrier::{Barrier, OnPanic};
use progress::{sleep_until, Progress};
use worker::Worker;

/// The longest the drain after a run may take: responses still arriving keep it going, up to
/// this.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// Handshakes one thread keeps in flight at most while connecting. More would only overflow
/// the server's SYN and accept queues and turn into 1 s SYN retransmits.
pub const MAX_CONNECTING: usize = 256;

/// Called by the engine's main thread at the edges of the measured window, so a caller can
/// sample the server (/proc, perf) over exactly the window the messages are counted in.
pub trait Window {
    /// Every connection is up; the warmup is about to start.
    fn connected(&mut self) {}
    fn measure_start(&mut self) {}
    fn measure_end(&mut self) {}
}

/// No sampling.
pub struct NoWindow;
impl Window for NoWindow {}

/// CPU used by the client over the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientCpu {
    pub user_s: f64,
    pub system_s: f64,
    /// CPU of each engine thread over the window, as a share of the window (1.0 = one core).
    pub thread_busy: Vec<f64>,
}

/// What the engine measured.
pub struct EngineResult {
    /// Messages (or HTTP replies) completed inside the measured window.
    pub messages: u64,
    /// Payload bytes received inside the window (echo: messages x size; HTTP: body bytes).
    pub bytes: u64,
    pub window: Duration,
    /// Latency in ns: from intended send time (open loop) or send time (closed loop).
    pub latency: Histogram<u64>,
    /// Open loop only: latency from the actual send, as a tool that ignores coordinated
    /// omission would report it.
    pub latency_uncorrected: Option<Histogram<u64>>,
    /// Handshake time in ns, connect() to established: the connect phase's, and with
    /// `--churn` every life's too (warmup and drain included).
    pub connect: Histogram<u64>,
    /// Connections up after the connect phase (churn's later lives are not counted here).
    pub connected: usize,
    pub errors: ErrorCounts,
    /// Every failed connect by cause (also counted in `errors`).
    pub connect_errors: ConnectErrors,
    /// `--churn`: connections that went through their whole life (connect, one echo, close)
    /// and finished inside the measured window; equal to `messages` then. 0 otherwise.
    pub connections_completed: u64,
    /// Seconds from the start of the measured window to the first error once the load had
    /// begun (negative: in the warmup); `None` when none happened then. A server killed in
    /// the middle of a run shows here, with the figures up to that moment in the rest.
    pub first_error_s: Option<f64>,
    /// Seconds from the start of the measured window to the moment the last active
    /// connection failed, when that happened before the window's end (a server killed
    /// mid-run); `None` while any connection lasted. Rates over the part of the window that
    /// had connections divide by this rather than by the window.
    pub all_lost_s: Option<f64>,
    /// The first few errors, spelled out (during the load, with when they happened).
    pub examples: Vec<String>,
    pub client_cpu: ClientCpu,
}

/// Runs the workload and calls `window` at the edges of the measured window.
///
/// Bounded whatever the server does: connecting, the window and the drain each have a limit,
/// and an engine thread that panics breaks the barriers the others wait on, so the run ends
/// with an error naming the panic instead of waiting forever.
pub fn run(workload: &Workload, window: &mut dyn Window) -> anyhow::Result<EngineResult> {
    run_inner(workload, window, None)
}

/// Where a test makes engine thread 0 panic, to check that a run still ends.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TestPanic {
    Connecting,
    Loading,
}

fn run_inner(
    workload: &Workload,
    window: &mut dyn Window,
    panic_in: Option<TestPanic>,
) -> anyhow::Result<EngineResult> {
    workload.check()?;
    let total = workload.connections + workload.idle;
    let threads = workload.threads.clamp(1, total);
    let shared = Arc::new(Shared {
        workload: workload.clone(),
        threads,
        pattern: Pattern::new(workload.size.max(HEADER)),
        request: match &workload.protocol {
            Protocol::Http { host, path } => {
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: netlab-loadgen\r\n\r\n")
                    .into_bytes()
            }
            Protocol::Echo => Vec::new(),
        },
        completed: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        connected: AtomicU64::new(0),
        active_done: Barrier::new(threads),
        all_connected: Barrier::new(threads + 1),
        go: Barrier::new(threads + 1),
        sampled: Barrier::new(threads + 1),
        start: Mutex::new(None),
        active_connected: AtomicU64::new(0),
        panic_in,
    });

    // Every worker is made here, before any thread waits on a barrier: a worker that failed
    // to start would leave the others waiting for it forever.
    let workers = (0..threads)
        .map(|index| Worker::new(Arc::clone(&shared), index))
        .collect::<anyhow::Result<Vec<Worker>>>()?;
    // This thread is a party to three barriers too: if it panics (in a `Window` call, say),
    // or cannot start every engine thread, the ones already started must not wait for it.
    let _guard = OnPanic(|| shared.break_barriers());
    let mut handles = Vec::new();
    for (index, worker) in workers.into_iter().enumerate() {
        let spawned = std::thread::Builder::new()
            .name(format!("loadgen-{index}"))
            .spawn(move || worker.run());
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                shared.break_barriers();
                let _ = engine_failure(handles);
                return Err(anyhow::Error::new(e).context("cannot start an engine thread"));
            }
        }
    }

    let progress = Progress::new(workload.progress, total as u64);
    // Connection phase: wait for every thread, showing how many are up.
    let wait_connected = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || shared.all_connected.wait())
    };
    while !wait_connected.is_finished() {
        progress.connecting(shared.connected.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(10));
    }
    if !matches!(wait_connected.join(), Ok(Ok(()))) {
        progress.finish();
        return Err(engine_failure(handles));
    }
    window.connected();

    let start = Instant::now();
    // No active connection came up (refused, say): nothing to measure, so no waiting either.
    let (warmup, duration) = if shared.active_connected.load(Ordering::Relaxed) == 0 {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (workload.warmup, workload.duration)
    };
    let measure_start = start + warmup;
    let end = measure_start + duration;
    *shared.start.lock().unwrap() = Some((start, measure_start, end));
    if shared.go.wait().is_err() {
        progress.finish();
        return Err(engine_failure(handles));
    }

    let completed = || -> u64 {
        shared
            .completed
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    };
    let failed = || shared.sampled.is_broken();
    progress.load_phase(warmup + duration);
    sleep_until(measure_start, &progress, start, &completed, &failed);
    window.measure_start();
    let usage_start = process_cpu();
    sleep_until(end, &progress, start, &completed, &failed);
    let usage_end = process_cpu();
    window.measure_end();
    let sampled = shared.sampled.wait();
    progress.finish();
    if sampled.is_err() {
        return Err(engine_failure(handles));
    }

    let mut results = Vec::new();
    for handle in handles {
        match handle.join() {
            Ok(result) => results.push(result?),
            Err(panic) => bail!("an engine thread panicked: {}", panic_text(&*panic)),
        }
    }

    let mut merged = EngineResult {
        messages: 0,
        bytes: 0,
        window: workload.duration,
        latency: new_histogram(),
        latency_uncorrected: workload.rate.map(|_| new_histogram()),
        connect: new_histogram(),
        connected: 0,
        errors: ErrorCounts::default(),
        connect_errors: ConnectErrors::default(),
        connections_completed: 0,
        first_error_s: None,
        all_lost_s: None,
        examples: Vec::new(),
        client_cpu: ClientCpu {
            user_s: usage_end.0 - usage_start.0,
            system_s: usage_end.1 - usage_start.1,
            thread_busy: Vec::new(),
        },
    };
    // Lost only when every thread with active connections lost them all; then at the last
    // such moment. A thread with only idle connections has none to lose.
    merged.all_lost_s = results
        .iter()
        .filter(|r| r.carries_load)
        .map(|r| r.all_lost_s)
        .collect::<Option<Vec<f64>>>()
        .and_then(|times| times.into_iter().reduce(f64::max));
    for r in results {
        merged.messages += r.messages;
        merged.bytes += r.bytes;
        merged.latency.add(&r.latency).ok();
        if let Some(h) = merged.latency_uncorrected.as_mut() {
            h.add(&r.latency_uncorrected).ok();
        }
        merged.connect.add(&r.connect).ok();
        merged.connected += r.connected;
        merged.errors.merge(&r.errors);
        merged.connect_errors.merge(&r.connect_errors);
        merged.first_error_s = match (merged.first_error_s, r.first_error_s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if workload.churn {
            merged.connections_completed += r.messages;
        }
        for e in r.examples {
            if merged.examples.len() < 8 {
                merged.examples.push(e);
            }
        }
        merged
            .client_cpu
            .thread_busy
            .push(r.cpu.as_secs_f64() / workload.duration.as_secs_f64());
    }
    Ok(merged)
}

/// After a broken barrier: joins every engine thread (each has stopped or is stopping) and
/// names the panic that broke it.
fn engine_failure(
    handles: Vec<std::thread::JoinHandle<anyhow::Result<worker::WorkerResult>>>,
) -> anyhow::Error {
    let mut failure = None;
    for handle in handles {
        match handle.join() {
            Err(panic) => {
                failure = Some(anyhow::anyhow!(
                    "an engine thread panicked: {}",
                    panic_text(&*panic)
                ))
            }
            Ok(Err(e)) if failure.is_none() => failure = Some(e),
            Ok(_) => {}
        }
    }
    failure.unwrap_or_else(|| anyhow::anyhow!("an engine thread stopped early"))
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// (user, system) seconds of this whole process, from getrusage(RUSAGE_SELF).
fn process_cpu() -> (f64, f64) {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => (timeval_secs(u.user_time()), timeval_secs(u.system_time())),
        Err(_) => (0.0, 0.0),
    }
}

/// CPU of the calling thread, from getrusage(RUSAGE_THREAD).
fn thread_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_THREAD) {
        Ok(u) => {
            Duration::from_secs_f64(timeval_secs(u.user_time()) + timeval_secs(u.system_time()))
        }
        Err(_) => Duration::ZERO,
    }
}

fn timeval_secs(tv: nix::sys::time::TimeVal) -> f64 {
    tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // 1 ns .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

struct Shared {
    workload: Workload,
    threads: usize,
    pattern: Pattern,
    request: Vec<u8>,
    /// Messages completed per thread (warmup included), for the progress line.
    completed: Vec<AtomicU64>,
    connected: AtomicU64,
    active_done: Barrier,
    all_connected: Barrier,
    go: Barrier,
    /// The main thread has sampled the server at the end of the window: connections may close
    /// (a thread-per-connection server loses its threads when they do).
    sampled: Barrier,
    /// Start of the load, of the measured window, and its end.
    start: Mutex<Option<(Instant, Instant, Instant)>>,
    active_connected: AtomicU64,
    #[cfg_attr(not(test), allow(dead_code))]
    panic_in: Option<TestPanic>,
}

impl Shared {
    /// A thread is dying: nobody waits for it any more.
    fn break_barriers(&self) {
        for barrier in [
            &self.active_done,
            &self.all_connected,
            &self.go,
            &self.sampled,
        ] {
            barrier.break_it();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A std echo server on a free port, one thread per connection.
    fn echo_server() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Target::Tcp(addr)
    }

    /// Runs with engine thread 0 panicking in `phase`; the run must end, with an error that
    /// names the panic, well within `limit` (the test's own bound, not the engine's).
    fn run_with_panic(phase: TestPanic) -> String {
        let workload = Workload {
            connections: 4,
            threads: 2,
            warmup: Duration::from_millis(100),
            duration: Duration::from_secs(10),
            ..Workload::echo(echo_server())
        };
        let (done, result) = mpsc::channel();
        std::thread::spawn(move || {
            let outcome = run_inner(&workload, &mut NoWindow, Some(phase));
            let _ = done.send(outcome.err().map(|e| format!("{e:#}")));
        });
        let limit = Duration::from_secs(20);
        let error = result
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("{phase:?}: the run did not end within {limit:?}"));
        error.unwrap_or_else(|| panic!("{phase:?}: a run with a panicked thread must fail"))
    }

    /// A `Window` that panics once every connection is up.
    struct PanickingWindow;
    impl Window for PanickingWindow {
        fn connected(&mut self) {
            panic!("the caller's window panics on purpose");
        }
    }

    #[test]
    fn a_panic_in_the_callers_window_releases_the_engine_threads() {
        // A server that reports each connection's end (EOF: the engine closed it).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target::Tcp(listener.local_addr().unwrap());
        let (closed, ends) = mpsc::channel();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let closed = closed.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                    let _ = closed.send(());
                });
            }
        });
        let workload = Workload {
            connections: 2,
            threads: 2,
            ..Workload::echo(target)
        };
        let outcome = std::panic::catch_unwind(move || {
            let _ = run_inner(&workload, &mut PanickingWindow, None);
        });
        assert!(outcome.is_err(), "the window's panic reaches the caller");
        // The engine threads were waiting for the main thread at the start of the load: they
        // must give up and close their connections rather than wait for good.
        for n in 0..2 {
            ends.recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("connection {n} still open: an engine thread waits"));
        }
    }

    #[test]
    fn a_thread_panicking_while_connecting_ends_the_run() {
        let error = run_with_panic(TestPanic::Connecting);
        assert!(
            error.contains("an engine thread panicked: engine thread 0 panics on purpose"),
            "{error}"
        );
    }

    #[test]
    fn a_thread_panicking_in_the_load_ends_the_run_early() {
        let started = Instant::now();
        let error = run_with_panic(TestPanic::Loading);
        assert!(
            error.contains("panics on purpose, in the Loading phase"),
            "{error}"
        );
        // The other thread stops at its next timeout check (within 0.1 s), not at the end of
        // the 10 s window; the bound is wide, as the tests share two cores.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
