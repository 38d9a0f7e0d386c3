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
//!    replies do, and latency is taken from the intended send time;
//! 3. drain: no new messages; what is in flight may finish as long as it makes progress (a
//!    connection silent for `timeout` fails, as during the run), for at most [`DRAIN_LIMIT`].
//!
//! Only messages that complete inside the measured window count for throughput and latency;
//! every error counts, whenever it happens.

use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use mio::event::Event;
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};

use crate::frame::{Pattern, HEADER};
use crate::target::Target;

/// The longest the drain after a run may take: responses still arriving keep it going, up to
/// this.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// Handshakes one thread keeps in flight at most while connecting. More would only overflow
/// the server's SYN and accept queues and turn into 1 s SYN retransmits.
pub const MAX_CONNECTING: usize = 256;

/// Open loop: unsent bytes one connection may queue before its next messages wait.
const MAX_UNSENT: usize = 1 << 20;

/// Connects started between two looks at the ready list.
const CONNECT_BATCH: usize = 16;

/// What is spoken on each connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Framed echo messages, checked byte for byte.
    Echo,
    /// HTTP/1.1 keep-alive `GET path`; a reply must be `200` with exactly `Content-Length`
    /// body bytes.
    Http { host: String, path: String },
}

/// Everything that defines a run.
#[derive(Debug, Clone)]
pub struct Workload {
    pub target: Target,
    pub protocol: Protocol,
    /// Connections that carry messages.
    pub connections: usize,
    /// Extra connections held open and silent.
    pub idle: usize,
    pub threads: usize,
    /// Bytes per echo message, header included.
    pub size: usize,
    /// Messages in flight per connection (closed loop).
    pub pipeline: usize,
    /// Open loop: messages per second in total.
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
    /// A connection with messages outstanding and no byte back for this long has timed out.
    pub timeout: Duration,
    /// TCP_NODELAY on every connection (Nagle off).
    pub nodelay: bool,
    /// New connections per second (all threads together); `None` is as fast as handshakes go.
    pub connect_rate: Option<f64>,
    /// Show a live progress line (only ever on a terminal).
    pub progress: bool,
}

impl Workload {
    /// An echo workload against `target` with the defaults of the `loadgen` command.
    pub fn echo(target: Target) -> Workload {
        Workload {
            target,
            protocol: Protocol::Echo,
            connections: 50,
            idle: 0,
            threads: 1,
            size: 512,
            pipeline: 1,
            rate: None,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            nodelay: true,
            connect_rate: None,
            progress: false,
        }
    }

    /// One line: `50 connections (+100 idle), 512-byte messages, pipeline 1, 5s after 1s warmup`.
    pub fn describe(&self) -> String {
        self.describe_varying(None)
    }

    /// [`Workload::describe`] without the figure named `varying` (`connections`, `idle` or
    /// `size`), for a sweep that varies it.
    pub fn describe_varying(&self, varying: Option<&str>) -> String {
        let mut parts = Vec::new();
        if varying != Some("connections") {
            let s = if self.connections == 1 { "" } else { "s" };
            parts.push(format!("{} connection{s}", self.connections));
        }
        if self.idle > 0 && varying != Some("idle") {
            parts.push(format!("+{} idle", self.idle));
        }
        match &self.protocol {
            Protocol::Echo if varying != Some("size") => {
                parts.push(format!("{}-byte messages", self.size))
            }
            Protocol::Echo => {}
            Protocol::Http { path, .. } => parts.push(format!("GET {path}")),
        }
        let mut text = parts.join(", ");
        match self.rate {
            Some(rate) => text += &format!(", open loop {} msg/s", crate::units::human(rate)),
            None => text += &format!(", pipeline {}", self.pipeline),
        }
        text += &format!(
            ", {} thread{}, {:.3}s after {:.3}s warmup",
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.duration.as_secs_f64(),
            self.warmup.as_secs_f64()
        );
        if !self.nodelay {
            text += ", Nagle on";
        }
        text
    }
}

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
    /// Handshake time in ns, connect() to established.
    pub connect: Histogram<u64>,
    pub connected: usize,
    pub errors: ErrorCounts,
    /// The first few errors, spelled out.
    pub examples: Vec<String>,
    pub client_cpu: ClientCpu,
}

/// Runs the workload and calls `window` at the edges of the measured window.
pub fn run(workload: &Workload, window: &mut dyn Window) -> anyhow::Result<EngineResult> {
    check_workload(workload)?;
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
    });

    // Every worker is made here, before any thread waits on a barrier: a worker that failed
    // to start would leave the others waiting for it forever.
    let workers = (0..threads)
        .map(|index| Worker::new(Arc::clone(&shared), index))
        .collect::<anyhow::Result<Vec<Worker>>>()?;
    let mut handles = Vec::new();
    for (index, worker) in workers.into_iter().enumerate() {
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{index}"))
            .spawn(move || worker.run())
            .context("cannot start an engine thread")?;
        handles.push(handle);
    }

    let progress = Progress::new(workload.progress, total as u64);
    // Connection phase: wait for every thread, showing how many are up.
    let wait_connected = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            shared.all_connected.wait();
        })
    };
    while !wait_connected.is_finished() {
        progress.connecting(shared.connected.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = wait_connected.join();
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
    shared.go.wait();

    let completed = || -> u64 {
        shared
            .completed
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    };
    progress.load_phase(warmup + duration);
    sleep_until(measure_start, &progress, start, &completed);
    window.measure_start();
    let usage_start = process_cpu();
    sleep_until(end, &progress, start, &completed);
    let usage_end = process_cpu();
    window.measure_end();
    shared.sampled.wait();
    progress.finish();

    let mut results = Vec::new();
    for handle in handles {
        match handle.join() {
            Ok(result) => results.push(result?),
            Err(_) => bail!("an engine thread panicked"),
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
        examples: Vec::new(),
        client_cpu: ClientCpu {
            user_s: usage_end.0 - usage_start.0,
            system_s: usage_end.1 - usage_start.1,
            thread_busy: Vec::new(),
        },
    };
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

/// A workload that cannot be run as asked: a usage error (the `loadgen` binary exits 2), as
/// opposed to a run that went wrong.
#[derive(Debug)]
pub struct BadArgument(pub String);

impl std::fmt::Display for BadArgument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadArgument {}

/// Refuses a run the client cannot carry, with the limit named, before anything connects.
fn check_workload(workload: &Workload) -> anyhow::Result<()> {
    let bad = |text: String| Err(BadArgument(text).into());
    if workload.connections == 0 {
        return bad("need at least one active connection (-c)".into());
    }
    if workload.protocol == Protocol::Echo && workload.size < HEADER {
        return bad(format!("--size must be at least {HEADER} bytes (the message header: length, connection id, sequence number)"));
    }
    if workload.pipeline == 0 {
        return bad("--pipeline must be at least 1".into());
    }
    if workload.duration.is_zero() {
        return bad("--duration must be more than 0".into());
    }
    if matches!(workload.rate, Some(r) if r <= 0.0) {
        return bad("--rate must be more than 0".into());
    }
    let total = workload.connections + workload.idle;
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap_or((u64::MAX, u64::MAX));
    let needed = total as u64 + 64;
    if needed > soft {
        bail!(
            "client limit: {total} connections need about {needed} descriptors but this \
             process may open {soft} (RLIMIT_NOFILE); raise it with `ulimit -n` (this is the \
             client's limit, not the server's)"
        );
    }
    if let Target::Tcp(addr) = &workload.target {
        if let Some((low, high)) = ephemeral_port_range() {
            let ports = (high - low + 1) as usize;
            if total > ports {
                bail!(
                    "client limit: {total} connections to one address need {total} ephemeral \
                     ports but net.ipv4.ip_local_port_range gives {ports} ({low}-{high}); \
                     connections to {addr} would fail with EADDRNOTAVAIL"
                );
            }
        }
    }
    Ok(())
}

fn ephemeral_port_range() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse().ok());
    Some((parts.next()??, parts.next()??))
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

fn sleep_until(
    deadline: Instant,
    progress: &Progress,
    start: Instant,
    completed: &dyn Fn() -> u64,
) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        progress.load(now - start, completed());
        std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}

/// The live progress line: indicatif on a terminal, nothing otherwise.
#[derive(Clone)]
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(wanted: bool, connections: u64) -> Progress {
        use std::io::IsTerminal;
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(connections);
            bar.set_style(
                indicatif::ProgressStyle::with_template("  {msg} [{bar:30}] {pos}/{len}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_message("connecting");
            bar
        });
        Progress { bar }
    }

    fn connecting(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(n);
        }
    }

    fn load_phase(&self, total: Duration) {
        if let Some(bar) = &self.bar {
            bar.set_length(total.as_millis() as u64);
            bar.set_position(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("  {msg} [{bar:30}] {elapsed}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
        }
    }

    fn load(&self, elapsed: Duration, completed: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(elapsed.as_millis() as u64);
            let rate = completed as f64 / elapsed.as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "{} msgs, {} msg/s",
                crate::units::human(completed as f64),
                crate::units::human(rate)
            ));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
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
}

struct WorkerResult {
    messages: u64,
    bytes: u64,
    latency: Histogram<u64>,
    latency_uncorrected: Histogram<u64>,
    connect: Histogram<u64>,
    connected: usize,
    errors: ErrorCounts,
    examples: Vec<String>,
    cpu: Duration,
}

/// A mio stream: TCP or Unix.
enum Sock {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Sock {
    fn open(target: &Target) -> io::Result<Sock> {
        match target {
            Target::Tcp(addr) => mio::net::TcpStream::connect(*addr).map(Sock::Tcp),
            Target::Unix(path) => mio::net::UnixStream::connect(path).map(Sock::Unix),
        }
    }

    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Sock::Tcp(s) => s,
            Sock::Unix(s) => s,
        }
    }

    /// After a writable event on a connecting socket: `Ok(true)` once the handshake is done.
    fn finish_connect(&self) -> io::Result<bool> {
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

    fn set_nodelay(&self, on: bool) {
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
    /// HTTP: the reply head read so far, and the body bytes still owed once it is parsed.
    head: Vec<u8>,
    body_left: Option<u64>,
}

struct Worker {
    shared: Arc<Shared>,
    index: usize,
    poll: Poll,
    conns: Vec<Conn>,
    buf: Vec<u8>,
    result: WorkerResult,
    inflight_total: usize,
    connecting: usize,
    /// Set once the load phase starts: the window and whether sending has stopped.
    measure_start: Instant,
    end: Instant,
    sending: bool,
}

/// An error on one connection: its kind and a line saying what happened.
struct ConnError(ErrorKind, String);

impl Worker {
    fn new(shared: Arc<Shared>, index: usize) -> anyhow::Result<Worker> {
        let w = &shared.workload;
        let ids = (index..w.connections + w.idle).step_by(shared.threads);
        let now = Instant::now();
        let conns = ids
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
                head: Vec::new(),
                body_left: None,
            })
            .collect();
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
                examples: Vec::new(),
                cpu: Duration::ZERO,
            },
            inflight_total: 0,
            connecting: 0,
            measure_start: now,
            end: now,
            sending: true,
            shared,
            index,
        })
    }

    fn run(mut self) -> anyhow::Result<WorkerResult> {
        let shared = Arc::clone(&self.shared);
        let active: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].active)
            .collect();
        let idle: Vec<usize> = (0..self.conns.len())
            .filter(|&i| !self.conns[i].active)
            .collect();
        let mut events = Events::with_capacity(1024);
        self.connect_all(&active, &mut events);
        shared.active_done.wait();
        self.connect_all(&idle, &mut events);
        shared.all_connected.wait();
        shared.go.wait();
        let (start, measure_start, end) =
            shared.start.lock().unwrap().expect("start set before go");
        self.measure_start = measure_start;
        self.end = end;
        self.load(start, &mut events);
        shared.sampled.wait();
        for i in 0..self.conns.len() {
            self.close(i);
        }
        Ok(self.result)
    }

    /// Opens the connections `which`, paced, and waits for their handshakes.
    fn connect_all(&mut self, which: &[usize], events: &mut Events) {
        let w = &self.shared.workload;
        let interval = w
            .connect_rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(self.shared.threads as f64 / r));
        let connect_timeout = w.timeout.max(Duration::from_secs(5));
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
                if let State::Connecting(since) = self.conns[i].state {
                    if now - since > connect_timeout {
                        self.fail(
                            i,
                            ConnError(
                                ErrorKind::Connect,
                                format!("handshake not done after {connect_timeout:?}"),
                            ),
                        );
                    }
                }
            }
        }
    }

    fn start_connect(&mut self, i: usize, now: Instant) {
        let target = self.shared.workload.target.clone();
        match Sock::open(&target) {
            Ok(mut sock) => {
                let token = Token(i);
                if let Err(e) = self.poll.registry().register(
                    sock.source(),
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    self.record_error(ConnError(ErrorKind::ClientLimit, format!("epoll_ctl: {e}")));
                    self.conns[i].state = State::Closed;
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
            Err(e) => {
                self.conns[i].state = State::Closed;
                let error = connect_error(&target, e);
                self.record_error(error);
            }
        }
    }

    fn connected(&mut self, i: usize, now: Instant) {
        let conn = &mut self.conns[i];
        if let State::Connecting(since) = conn.state {
            let ns = (now - since).as_nanos().max(1) as u64;
            self.result.connect.saturating_record(ns);
            conn.state = State::Open;
            conn.last_progress = now;
            self.connecting -= 1;
            self.result.connected += 1;
            self.shared.connected.fetch_add(1, Ordering::Relaxed);
            if conn.active {
                self.shared.active_connected.fetch_add(1, Ordering::Relaxed);
            }
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
                        let error = connect_error(&self.shared.workload.target, e);
                        self.fail(i, error);
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
            if let Some(left) = conn.body_left {
                let take = (data.len() as u64).min(left);
                data = &data[take as usize..];
                conn.body_left = Some(left - take);
                // Body bytes count as they arrive inside the window, not when the reply ends:
                // a 1 GiB reply takes seconds and would otherwise land all at once, or after
                // the window, and CPU per GiB would divide by the wrong bytes.
                if now >= self.measure_start && now < self.end {
                    self.result.bytes += take;
                }
                if left == take {
                    self.conns[i].body_left = None;
                    self.complete(i, 0, now);
                }
                continue;
            }
            // Reading the head: keep bytes until the blank line; what follows it is body.
            let old = conn.head.len();
            conn.head.extend_from_slice(data);
            let from = old.saturating_sub(3);
            let Some(pos) = find(&conn.head[from..], b"\r\n\r\n").map(|p| p + from) else {
                if conn.head.len() > 64 * 1024 {
                    return Err(ConnError(ErrorKind::Http, "reply head over 64 KiB".into()));
                }
                return Ok(());
            };
            let length = parse_http_head(&conn.head[..pos + 4])
                .map_err(|e| ConnError(ErrorKind::Http, format!("connection {}: {e}", conn.id)))?;
            // The head's end in `data`: the head began `old` bytes before `data` did.
            data = &data[pos + 4 - old..];
            conn.head.clear();
            if length == 0 {
                self.complete(i, 0, now);
            } else {
                conn.body_left = Some(length);
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
        if self.sending && self.shared.workload.rate.is_none() {
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
        if self.result.examples.len() < 8 {
            self.result
                .examples
                .push(format!("{}: {}", error.0.name(), error.1));
        }
    }

    /// Warmup, measured window and drain.
    fn load(&mut self, start: Instant, events: &mut Events) {
        let w = self.shared.workload.clone();
        let mut cpu_at_start = None;
        let mut schedule: BinaryHeap<std::cmp::Reverse<(Instant, usize)>> = BinaryHeap::new();
        let interval = w
            .rate
            .map(|r| Duration::from_secs_f64(w.connections as f64 / r));
        for i in 0..self.conns.len() {
            if !(self.conns[i].active && self.conns[i].state == State::Open) {
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

/// Names a failed connect: the client's own limits apart from the server's refusals.
fn connect_error(target: &Target, e: io::Error) -> ConnError {
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

fn io_error(id: u32, call: &str, e: io::Error) -> ConnError {
    // ECONNRESET and EPIPE mostly; any other error on an open socket ends it the same way.
    ConnError(ErrorKind::Reset, format!("connection {id}: {call}: {e}"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks a reply head and returns its Content-Length.
fn parse_http_head(head: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(head).map_err(|_| "reply head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x reply: {status:?}"));
    }
    if code != "200" {
        return Err(format!("status {status:?}, expected 200"));
    }
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "Transfer-Encoding {value:?} is not supported; need Content-Length"
            ));
        }
    }
    length.ok_or_else(|| "reply without Content-Length".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_heads() {
        assert_eq!(
            parse_http_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"),
            Ok(12)
        );
        assert!(parse_http_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").is_err());
        assert!(parse_http_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_http_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

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
