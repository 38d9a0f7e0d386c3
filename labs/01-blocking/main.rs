//! # Lab 01: a blocking echo server, one client at a time or one thread per client
//!
//! ```text
//! cargo run --release --bin echo-blocking                      # a thread per connection
//! cargo run --release --bin echo-blocking -- --mode iterative  # one client at a time
//! cargo run --release --bin echo-blocking -- --stack-size 64k  # reserve 64 KiB per thread
//! strace -f -tt -e trace=accept4,recvfrom,sendto,clone3,close -p PID
//! ```
//!
//! What to look for: every call waits. `accept4` sleeps until a client connects, `recvfrom`
//! until it sends, `sendto` until the socket buffer has room. Nothing else happens in that
//! thread meanwhile.
//!
//! - `--mode iterative`: connect a second `nc` while the first is open: it connects (the kernel
//!   finishes the handshake and queues it, up to the listen backlog) but gets no echo until the
//!   first client leaves. That is the problem every later lab solves.
//! - `--mode threads`: each connection gets its own thread (`clone3` in strace, `-f` to follow
//!   it), so a slow client blocks only itself. The cost: a thread per connection, each with its
//!   own stack (2 MiB of address space reserved by Rust, touched only as used; `--stack-size`
//!   sets it), and a context switch for every wake-up (`voluntary_ctxt_switches` in each
//!   thread's /proc/PID/task/TID/status).
//!
//! A client that never reads needs no special care here: `sendto` blocks when its buffer is
//! full, so the thread stops reading too. The kernel's buffers are the only memory it holds.
//!
//! Compare with the next lab: `diff labs/01-blocking/main.rs labs/02-select/main.rs`.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use netlab_core::echo::READ_CHUNK;
use netlab_core::{
    exit_on_error, is_fd_exhausted, parse_args, parse_size, EchoConn, Model, Server, ServerArgs,
    Stats, Step, Stream,
};
use nix::sys::socket::{shutdown, Shutdown};

/// Blocking echo server: one client at a time, or one thread per client.
#[derive(Parser)]
#[command(name = "echo-blocking", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// iterative: serve one client at a time; threads: a thread per connection.
    #[arg(long, value_enum, default_value_t = Mode::Threads)]
    mode: Mode,

    /// Address space reserved for each connection thread's stack (64k, 1MiB, ...). Rust's
    /// default is 2 MiB, or RUST_MIN_STACK; the kernel backs only the pages a thread touches.
    #[arg(long, value_name = "BYTES", value_parser = parse_stack_size)]
    stack_size: Option<usize>,
}

/// `--stack-size`: at least 16 KiB (PTHREAD_STACK_MIN; std would round a smaller size up).
fn parse_stack_size(text: &str) -> Result<usize, String> {
    match parse_size(text)? {
        n if n < 16 * 1024 => Err("must be at least 16k (PTHREAD_STACK_MIN)".into()),
        n => Ok(n),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Iterative,
    Threads,
}

fn main() {
    let cli: Cli = parse_args();
    exit_on_error("echo-blocking", run(cli));
}

/// The sockets being served, so a stop request can wake the threads blocked on them. A socket
/// is listed only while its serving thread owns it open (it joins the list first thing and
/// leaves it before it closes), so the fd cannot be closed and reused under the watcher's feet.
#[derive(Default)]
struct Open {
    sockets: HashSet<RawFd>,
    closing: bool,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let model = Model {
        name: "blocking",
        trace: "accept4,recvfrom,sendto,clone3,close",
    };
    let server = Server::start(model, &cli.server)?;
    let open = Mutex::new(Open::default());
    let accepting = AtomicBool::new(true);

    std::thread::scope(|scope| {
        scope.spawn(|| watch_signals(&server, &open, &accepting));
        let mut at_fd_limit = false;
        for id in 0.. {
            let accepted = accept(&server, &mut at_fd_limit);
            if server.signals.stop_requested() {
                break; // dropping what was accepted closes it
            }
            let Some(stream) = accepted else { continue };
            Stats::add(&server.stats.connections, 1);
            match cli.mode {
                // The next client waits in the accept queue until this one is done.
                Mode::Iterative => serve(&server, &open, stream),
                Mode::Threads => {
                    let (server, open) = (&server, &open);
                    let mut thread = std::thread::Builder::new().name(format!("conn-{id}"));
                    if let Some(bytes) = cli.stack_size {
                        thread = thread.stack_size(bytes); // the mmap in clone3's stack_size=
                    }
                    let spawned = thread.spawn_scoped(scope, move || serve(server, open, stream));
                    if let Err(e) = spawned {
                        // EAGAIN: out of threads or memory. The stream went down with the closure.
                        eprintln!("echo-blocking: cannot start a thread for a connection: {e}");
                        Stats::add(&server.stats.errors, 1);
                    }
                }
            }
        }
        accepting.store(false, Ordering::SeqCst);
    }); // the scope joins every connection thread before we get here
    server.finish();
    Ok(())
}

/// Blocks in `accept4` until a client connects. On EMFILE the connection stays queued and
/// accept would fail again at once: sleep a little instead of spinning (and say so once).
fn accept(server: &Server, at_fd_limit: &mut bool) -> Option<Stream> {
    match server.listener.accept() {
        Ok(stream) => {
            *at_fd_limit = false;
            Some(stream)
        }
        Err(e) if is_fd_exhausted(&e) => {
            if !std::mem::replace(at_fd_limit, true) {
                eprintln!("echo-blocking: accept4: {e}; retrying every 100 ms");
            }
            std::thread::sleep(Duration::from_millis(100));
            None
        }
        Err(e) => {
            eprintln!("echo-blocking: accept4: {e}");
            None
        }
    }
}

/// Echoes one client until it closes: read, then write all of it back, then read again.
fn serve(server: &Server, open: &Mutex<Open>, stream: Stream) {
    let fd = stream.as_raw_fd();
    // Listed while this thread owns the fd open, so a stop request can shut it down.
    if !register(open, fd) {
        return; // stopping: dropping the stream closes it
    }
    let mut conn = EchoConn::new(stream, server.max_pending);
    let mut scratch = vec![0u8; READ_CHUNK];
    if echo(&server.stats, &mut conn, &mut scratch).is_err() {
        Stats::add(&server.stats.errors, 1); // ECONNRESET, EPIPE: only this connection ends
    }
    open.lock().unwrap().sockets.remove(&fd);
    drop(conn); // close(2), now that the watcher can no longer see the fd
}

/// Lists the socket so [`watch_signals`] can shut it down. False when the server is stopping.
fn register(open: &Mutex<Open>, fd: RawFd) -> bool {
    let mut open = open.lock().unwrap();
    !open.closing && open.sockets.insert(fd)
}

/// The echo loop of a blocking server: each call waits until it can do its work.
fn echo(stats: &Stats, conn: &mut EchoConn, scratch: &mut [u8]) -> std::io::Result<()> {
    loop {
        if conn.read_once(scratch)? == Step::Eof {
            return Ok(());
        }
        while conn.pending() > 0 {
            if let Step::Moved(n) = conn.write_once()? {
                Stats::add(&stats.bytes, n as u64);
            }
        }
    }
}

/// Waits for SIGINT/SIGTERM (SIGUSR1: print the counters). Signal handlers are installed with
/// SA_RESTART, so the blocked `accept4` and `recvfrom` calls would not notice the signal: wake
/// each connection thread by shutting its socket down (its read returns end of file), and the
/// accepting thread by connecting to our own listener, again every 100 ms until it has left
/// (at the fd limit the connection itself may fail with EMFILE).
fn watch_signals(server: &Server, open: &Mutex<Open>, accepting: &AtomicBool) {
    loop {
        server.signals.wait();
        if server.signals.take_report() {
            server.report();
        }
        if server.signals.stop_requested() {
            break;
        }
    }
    let mut open = open.lock().unwrap();
    open.closing = true;
    for &fd in &open.sockets {
        let _ = shutdown(fd, Shutdown::Both);
    }
    drop(open);
    while accepting.load(Ordering::SeqCst) {
        let _ = server.listener.knock();
        std::thread::sleep(Duration::from_millis(100));
    }
}
