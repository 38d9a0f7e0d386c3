//! What every server does around its wait loop: bind, say where it listens, count, and print a
//! summary when it stops.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

use crate::cli::ServerArgs;
use crate::listener::Listener;
use crate::signals::Signals;

/// Which lab is running, for the "listening" line and the hints printed at start.
pub struct Model {
    /// Short name: `select`, `epoll-et`, ... (appears as `model=` in the listening line).
    pub name: &'static str,
    /// The syscalls worth tracing in this model, as `strace -e trace=` takes them.
    pub trace: &'static str,
}

/// Counters every server keeps. Atomic so thread-per-connection servers can share them.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted and served.
    pub connections: AtomicU64,
    /// Connections accepted and closed at once because this model could not take them
    /// (select: fd at or above FD_SETSIZE).
    pub refused: AtomicU64,
    /// Connections that ended in an error (ECONNRESET, EPIPE, ...) rather than a clean close.
    pub errors: AtomicU64,
    /// Bytes written back to clients.
    pub bytes: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `connections=N bytes=N refused=N errors=N`
    pub fn line(&self) -> String {
        format!(
            "connections={} bytes={} refused={} errors={}",
            self.connections.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// A listening server: the socket, the signal pipe and the counters.
pub struct Server {
    pub model: Model,
    pub listener: Listener,
    pub signals: Signals,
    pub stats: Stats,
    pub max_pending: usize,
}

impl Server {
    /// Binds the listener, installs the signal handlers, prints a few things to try on stderr,
    /// then the "listening" line on stdout (`listening on 127.0.0.1:7000 pid=42 model=poll`).
    pub fn start(model: Model, args: &ServerArgs) -> anyhow::Result<Server> {
        Self::start_with(model, args, Listener::bind_tcp)
    }

    /// [`start`](Self::start), binding a TCP address with `bind_tcp` (echo-reuseport binds
    /// its [`Listener::bind_tcp_reuse_port`] group there, before the "listening" line).
    pub fn start_with(
        model: Model,
        args: &ServerArgs,
        bind_tcp: impl FnOnce(std::net::SocketAddr, i32) -> std::io::Result<Listener>,
    ) -> anyhow::Result<Server> {
        let listener = match &args.unix {
            Some(path) => Listener::bind_unix(path, args.backlog)
                .with_context(|| format!("cannot listen on unix:{}", path.display()))?,
            None => bind_tcp(args.addr, args.backlog).with_context(|| {
                format!(
                    "cannot listen on {} (try another --addr, or port 0 for any free port)",
                    args.addr
                )
            })?,
        };
        let signals = Signals::install().context("cannot install signal handlers")?;
        let server = Server {
            model,
            listener,
            signals,
            stats: Stats::default(),
            max_pending: args.max_pending,
        };
        server.announce(args.backlog);
        Ok(server)
    }

    fn announce(&self, backlog: i32) {
        let pid = std::process::id();
        let addr = self.listener.address();
        let name = self.model.name;
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        // What a client on this machine types: loopback in place of 0.0.0.0 or ::.
        let (nc, target) = match self.listener.client_address() {
            Ok(client) => (
                format!("nc {} {}", client.ip(), client.port()),
                client.to_string(),
            ),
            Err(_) => (
                format!("nc -U {}", addr.trim_start_matches("unix:")),
                addr.clone(),
            ),
        };
        eprintln!("echo-{name}: pid {pid}, listening on {addr}. Try:");
        eprintln!("  {nc:<58} type a line, get it back");
        eprintln!("  strace -f -tt -e trace={} -p {pid}", self.model.trace);
        eprintln!("  cargo run --release --bin loadgen -- {target} -c 50 -d 5s");
        eprintln!("  kill -USR1 {pid}   print the counters;   Ctrl-C or kill {pid}   stop");
        if let Some(max) = somaxconn.filter(|&max| backlog > max) {
            eprintln!("  (backlog {backlog} is capped by the kernel at net.core.somaxconn={max})");
        }
        // Last, so that everything the server says at start is out once this line is.
        println!("listening on {addr} pid={pid} model={name}");
        let _ = std::io::stdout().flush();
    }

    /// The signal self-pipe was readable: empties it, prints the counters if SIGUSR1 came, and
    /// returns true if SIGINT or SIGTERM asked the server to stop.
    pub fn on_signal(&self) -> bool {
        self.signals.drain();
        if self.signals.take_report() {
            self.report();
        }
        self.signals.stop_requested()
    }

    /// Prints the counters so far on stderr (on SIGUSR1).
    pub fn report(&self) {
        eprintln!("echo-{}: {}", self.model.name, self.stats.line());
    }

    /// Prints the one-line summary on stdout: `stopped model=poll connections=3 bytes=...`.
    pub fn finish(self) {
        println!("stopped model={} {}", self.model.name, self.stats.line());
        let _ = std::io::stdout().flush();
    }
}

/// Runs a lab's `run()` and turns an error into one line on stderr and exit status 1.
pub fn exit_on_error(name: &str, result: anyhow::Result<()>) {
    if let Err(e) = result {
        eprintln!("{name}: error: {e:#}");
        std::process::exit(1);
    }
}
