//! # Lab 08: an echo server on `mio`
//!
//! ```text
//! cargo run --release --bin echo-mio
//! strace -f -tt -e trace=epoll_wait,epoll_ctl,accept4,recvfrom,sendto,close -p PID
//! ```
//!
//! What to look for: mio (the layer under tokio) is one API over epoll on Linux, kqueue on the
//! BSDs and macOS, and IOCP on Windows. On Linux it *is* epoll, edge-triggered, and only that:
//! strace shows the same calls as lab 05, each socket added once with
//! `EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET` (mio adds `EPOLLRDHUP` to notice a peer's half-close).
//! So the same rule holds: after every event, drain the socket (to EAGAIN with
//! `--drain-to-eagain`, by default to a short read, as lab 05 explains).
//!
//! mio's vocabulary: a `Poll` owns the epoll instance, its `Registry` adds sources with an
//! `Interest` and a `Token` (the 64-bit `data` of epoll), and `poll()` fills `Events`.
//! The sockets here are the same std sockets as every other lab, registered by fd (`SourceFd`),
//! so the echo code is shared too.
//!
//! Compare with lab 05: `diff labs/05-epoll-et/main.rs labs/08-mio/main.rs`.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};

use clap::Parser;
use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use netlab_core::echo::READ_CHUNK;
use netlab_core::{
    run_main, AcceptPause, Accepted, Drain, EchoConn, Model, Server, ServerArgs, Stats, Want,
};

/// Echo server on mio: epoll, edge-triggered, behind a portable API.
#[derive(Parser)]
#[command(name = "echo-mio", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// The textbook loop: read until EAGAIN, one more recvfrom per wake-up. By default a short
    /// read (fewer bytes than asked for) ends the draining: the socket was empty then, and
    /// later bytes raise a new edge.
    #[arg(long)]
    drain_to_eagain: bool,
}

fn main() {
    run_main(run);
}

/// A `Token` is epoll's `data`: the fd for connections, these for the rest.
const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);

fn run(cli: Cli) -> anyhow::Result<()> {
    let model = Model {
        name: "mio",
        trace: "epoll_wait,epoll_ctl,accept4,recvfrom,sendto,close",
    };
    let server = Server::start(model, &cli.server)?;
    server.listener.set_nonblocking(true)?;
    let drain = if cli.drain_to_eagain {
        Drain::ToEagain
    } else {
        Drain::UntilShortRead
    };

    let mut poll = Poll::new()?;
    let registry = poll.registry();
    registry.register(
        &mut SourceFd(&server.listener.as_raw_fd()),
        LISTENER,
        Interest::READABLE,
    )?;
    registry.register(
        &mut SourceFd(&server.signals.wake_fd().as_raw_fd()),
        SIGNALS,
        Interest::READABLE,
    )?;

    // Indexed by fd, so `recvfrom(7, ...)` in strace is `conns[&7]` here.
    let mut conns: HashMap<RawFd, EchoConn> = HashMap::new();
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut events = Events::with_capacity(1024);
    let mut pause = AcceptPause::default();
    let mut accept_waiting = false;

    'serve: loop {
        // After EMFILE, connections wait in the accept queue and no new edge will announce them:
        // come back for them once a connection has closed or the pause is over.
        if accept_waiting && !pause.is_paused() {
            accept_waiting = accept_all(&server, poll.registry(), &mut conns, &mut pause);
        }
        let timeout = match pause.wait_timeout_ms() {
            -1 => None,
            ms => Some(std::time::Duration::from_millis(ms as u64)),
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            // A signal arrived; mio hands epoll_wait's EINTR back to us, as it should.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        // Only the fds that changed come back, once each.
        for event in events.iter() {
            match event.token() {
                LISTENER => {
                    accept_waiting = accept_all(&server, poll.registry(), &mut conns, &mut pause)
                }
                SIGNALS => {
                    if server.on_signal() {
                        break 'serve; // SIGINT or SIGTERM
                    }
                }
                Token(fd) => on_event(
                    &server,
                    &mut conns,
                    &mut pause,
                    fd as RawFd,
                    event,
                    &mut scratch,
                    drain,
                ),
            }
        }
    }
    drop(conns); // close(2) every connection
    server.finish();
    Ok(())
}

/// Accepts until EAGAIN: the edge announced "at least one", and there may be many. Registers
/// each once, for both directions. Returns true when EMFILE left connections in the queue.
fn accept_all(
    server: &Server,
    registry: &Registry,
    conns: &mut HashMap<RawFd, EchoConn>,
    pause: &mut AcceptPause,
) -> bool {
    loop {
        let stream = match server.accept_next(pause) {
            Accepted::Stream(stream) => stream,
            Accepted::Empty => return false,
            Accepted::Exhausted => return true,
        };
        let fd = stream.as_raw_fd();
        if let Err(e) = registry.register(&mut SourceFd(&fd), Token(fd as usize), interest()) {
            // ENOSPC (fs.epoll.max_user_watches) or ENOMEM: this connection only.
            let program = server.program();
            eprintln!("{program}: epoll_ctl(EPOLL_CTL_ADD, {fd}): {e}; closing it");
            continue;
        }
        let conn = EchoConn::new(stream, server.max_pending);
        conns.insert(fd, conn);
        Stats::add(&server.stats.connections, 1);
    }
}

/// One connection had an event: echo until the socket says EAGAIN, close when done.
fn on_event(
    server: &Server,
    conns: &mut HashMap<RawFd, EchoConn>,
    pause: &mut AcceptPause,
    fd: RawFd,
    event: &Event,
    scratch: &mut [u8],
    drain: Drain,
) {
    let Some(conn) = conns.get_mut(&fd) else {
        return;
    };
    let stats = &server.stats;
    // A FIN that came with the last bytes raises no edge of its own after the short read that
    // took them: mio's read-closed (EPOLLRDHUP) says it is there, so then read on until EOF.
    let closed = event.is_read_closed() || event.is_error();
    let drain = if closed { Drain::ToEagain } else { drain };
    // mio is edge-triggered: drain the socket (EchoConn::drain: to EAGAIN, or to a short
    // read), or the rest is never reported.
    let result = conn.drain(scratch, stats, drain);
    match result {
        Ok(Want::Close) => {}
        Ok(_) => return, // registered for both directions: the next event brings us back
        Err(_) => Stats::add(&stats.errors, 1), // ECONNRESET, EPIPE: only this connection ends
    }
    // Closing the fd also removes it from the epoll interest list (no other fd refers to it).
    conns.remove(&fd);
    pause.resume();
}

/// mio's interest never changes with the connection's wish here: both directions, once.
fn interest() -> Interest {
    Interest::READABLE | Interest::WRITABLE
}
