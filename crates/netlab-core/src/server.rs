//! What every server does around its wait loop: bind, say where it listens, count, and print a
//! summary when it stops.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

use clap::Parser;

use crate::cli::{parse_args, ServerArgs};
use crate::listener::{is_fd_exhausted, AcceptPause, Listener, Stream};
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

/// The counters a server prints as its summary (`connections=3 bytes=1536 ...`).
pub trait Summary {
    /// `name=value` pairs separated by spaces, the same fields every time.
    fn line(&self) -> String;
}

impl Summary for Stats {
    fn line(&self) -> String {
        Stats::line(self)
    }
}

/// A listening server: the socket, the signal pipe and the counters (the echo servers' [`Stats`],
/// or a server's own [`Summary`]).
pub struct Server<S = Stats> {
    pub model: Model,
    pub listener: Listener,
    pub signals: Signals,
    pub stats: S,
    /// The echo servers' `--max-pending` (0 for a server that echoes nothing).
    pub max_pending: usize,
    /// The program's name in messages: `echo-poll`, `fileserve`.
    program: String,
}

/// Binds a TCP listener the way every server does, with an error that says what to try.
pub fn listen_tcp(addr: SocketAddr, backlog: i32) -> anyhow::Result<Listener> {
    listen_tcp_with(addr, backlog, Listener::bind_tcp)
}

/// [`listen_tcp`] with another way to bind (echo-reuseport's
/// [`Listener::bind_tcp_reuse_port`] group), and the same error.
fn listen_tcp_with(
    addr: SocketAddr,
    backlog: i32,
    bind_tcp: impl FnOnce(SocketAddr, i32) -> std::io::Result<Listener>,
) -> anyhow::Result<Listener> {
    bind_tcp(addr, backlog).with_context(|| {
        format!("cannot listen on {addr} (try another --addr, or port 0 for any free port)")
    })
}

impl Server {
    /// Binds the listener, installs the signal handlers, prints a few things to try on stderr,
    /// then the "listening" line on stdout (`listening on 127.0.0.1:7000 pid=42 model=poll`).
    pub fn start(model: Model, args: &ServerArgs) -> anyhow::Result<Server> {
        Self::start_binding(model, args, Listener::bind_tcp)
    }

    /// [`start`](Self::start), binding a TCP address with `bind_tcp` (echo-reuseport binds
    /// its [`Listener::bind_tcp_reuse_port`] group there, before the "listening" line).
    pub fn start_binding(
        model: Model,
        args: &ServerArgs,
        bind_tcp: impl FnOnce(SocketAddr, i32) -> std::io::Result<Listener>,
    ) -> anyhow::Result<Server> {
        let listener = match &args.unix {
            Some(path) => Listener::bind_unix(path, args.backlog)
                .with_context(|| format!("cannot listen on unix:{}", path.display()))?,
            None => listen_tcp_with(args.addr, args.backlog, bind_tcp)?,
        };
        let program = format!("echo-{}", model.name);
        let mut server = Server::start_with(
            model,
            &program,
            listener,
            Stats::default(),
            args.backlog,
            |target, pid| {
                let nc = match target.parse::<SocketAddr>() {
                    Ok(tcp) => format!("nc {} {}", tcp.ip(), tcp.port()),
                    Err(_) => format!("nc -U {}", target.trim_start_matches("unix:")),
                };
                vec![
                format!("{nc:<58} type a line, get it back"),
                format!("cargo run --release --bin loadgen -- {target} -c 50 -d 5s --server-pid {pid}"),
            ]
            },
        )?;
        server.max_pending = args.max_pending;
        Ok(server)
    }
}

impl<S: Summary> Server<S> {
    /// [`Server::start`] for a server that is not an echo server: it brings its own listener,
    /// counters and first lines to try. `try_lines(target, pid)` gets where a client on this
    /// machine connects (`127.0.0.1:8080`, loopback for a wildcard address, or `unix:PATH`).
    /// The strace line (after the first of these), the signal line and the backlog note are the
    /// same for every server.
    pub fn start_with(
        model: Model,
        program: &str,
        listener: Listener,
        stats: S,
        backlog: i32,
        try_lines: impl FnOnce(&str, u32) -> Vec<String>,
    ) -> anyhow::Result<Server<S>> {
        let signals = Signals::install().context("cannot install signal handlers")?;
        let server = Server {
            model,
            listener,
            signals,
            stats,
            max_pending: 0,
            program: program.to_string(),
        };
        server.announce(backlog, try_lines);
        Ok(server)
    }

    fn announce(&self, backlog: i32, try_lines: impl FnOnce(&str, u32) -> Vec<String>) {
        let pid = std::process::id();
        let addr = self.listener.address();
        let name = self.model.name;
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        // What a client on this machine types: loopback in place of 0.0.0.0 or ::.
        let target = match self.listener.client_address() {
            Ok(client) => client.to_string(),
            Err(_) => addr.clone(),
        };
        eprintln!("{}: pid {pid}, listening on {addr}. Try:", self.program);
        // The first line to try, then strace to watch it with, then the rest.
        let strace = format!("strace -f -tt -e trace={} -p {pid}", self.model.trace);
        let mut lines = try_lines(&target, pid);
        lines.insert(lines.len().min(1), strace);
        for line in lines {
            eprintln!("  {line}");
        }
        eprintln!("  kill -USR1 {pid}   print the counters;   Ctrl-C or kill {pid}   stop");
        if let Some(max) = somaxconn.filter(|&max| backlog > max) {
            eprintln!("  (backlog {backlog} is capped by the kernel at net.core.somaxconn={max})");
        }
        // Last, so that everything the server says at start is out once this line is.
        println!("listening on {addr} pid={pid} model={name}");
        let _ = std::io::stdout().flush();
    }

    /// The program's name, as messages start: `echo-poll`, `fileserve`.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// One `accept4(fd, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK)` on the non-blocking listener:
    /// the boring half of every accept loop. EAGAIN is [`Accepted::Empty`]. EMFILE (and ENFILE,
    /// ENOBUFS, ENOMEM) starts `pause` (logged once per episode) and is
    /// [`Accepted::Exhausted`]: the connection stays queued. Any other error (ECONNABORTED: a
    /// client gave up while it waited) ends only that connection: it is logged and the next one
    /// is tried.
    pub fn accept_next(&self, pause: &mut AcceptPause) -> Accepted {
        loop {
            match self.listener.accept_nonblocking() {
                Ok(stream) => return Accepted::Stream(stream),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Accepted::Empty,
                Err(e) if is_fd_exhausted(&e) => {
                    pause.pause(&self.program, &e);
                    return Accepted::Exhausted;
                }
                Err(e) => eprintln!("{}: accept4: {e}", self.program),
            }
        }
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

    /// Prints the counters so far on stderr (on SIGUSR1): `echo-poll: connections=3 ...`.
    pub fn report(&self) {
        eprintln!("{}: {}", self.program, self.stats.line());
    }

    /// Prints the one-line summary on stdout: `stopped model=poll connections=3 bytes=...`.
    pub fn finish(self) {
        println!("stopped model={} {}", self.model.name, self.stats.line());
        let _ = std::io::stdout().flush();
    }
}

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (`setrlimit(2)`), so a
/// server meant to hold many connections is not stopped at the usual soft 1024. Returns the
/// limit now in force. Echo servers leave the limit alone: their EMFILE behaviour is a lesson.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard))
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() =>
        {
            hard
        }
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// What [`Server::accept_next`] got.
pub enum Accepted {
    /// A new connection, non-blocking from birth.
    Stream(Stream),
    /// EAGAIN: the accept queue is empty.
    Empty,
    /// Out of descriptors: the rest wait in the queue, and the listener is paused.
    Exhausted,
}

/// A lab's `main`: parses the command line ([`parse_args`]: one-line errors, exit status 2),
/// runs `run`, and turns its error into one line on stderr and exit status 1, both under the
/// program's name (clap's `#[command(name = ...)]`, so a lab names itself once).
pub fn run_main<T: Parser>(run: impl FnOnce(T) -> anyhow::Result<()>) {
    let cli: T = parse_args();
    exit_on_error(T::command().get_name(), run(cli));
}

/// Runs a lab's `run()` and turns an error into one line on stderr and exit status 1.
pub fn exit_on_error(name: &str, result: anyhow::Result<()>) {
    if let Err(e) = result {
        eprintln!("{name}: error: {e:#}");
        std::process::exit(1);
    }
}
