//! # Lab 05: an echo server on `epoll`, edge-triggered
//!
//! ```text
//! cargo run --release --bin echo-epoll-et
//! strace -f -tt -e trace=epoll_wait,epoll_ctl,accept4,recvfrom,sendto,close -p PID
//! ```
//!
//! What to look for: each connection is registered once with `EPOLLIN|EPOLLOUT|EPOLLET` and never
//! modified: no `EPOLL_CTL_MOD` at all, unlike the level-triggered lab. The price is on the other
//! side: edge-triggered means "tell me when something changes", not "while it is true". Bytes
//! left unread are never reported again, so after each wake-up the server drains the socket
//! and accepts until `accept4(...) = -1 EAGAIN`. Draining ends at `recvfrom(...) = -1 EAGAIN`
//! with `--drain-to-eagain` (the textbook loop, one extra syscall per wake-up), or by default at
//! a short read, which shows the socket empty just as well (plus `EPOLLRDHUP`, for a FIN that
//! came with the last bytes: see the README).
//!
//! See it go wrong: `--broken-read-once` reads once per wake-up, as the level-triggered server
//! does. Send one message larger than one read (64 KiB) in one go and then wait for the echo:
//! the tail of the message sits in the socket, unseen, until the client sends something else.
//! The README gives a command that stalls every time, and why.
//!
//! Compare with the previous lab: `diff labs/04-epoll-lt/main.rs labs/05-epoll-et/main.rs`.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};

use clap::Parser;
use netlab_core::echo::READ_CHUNK;
use netlab_core::{
    run_main, AcceptPause, Accepted, Drain, EchoConn, Model, Server, ServerArgs, Stats, Want,
};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Echo server on epoll, edge-triggered: register once, then drain every socket on each edge.
#[derive(Parser)]
#[command(name = "echo-epoll-et", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// The textbook loop: read until EAGAIN, one more recvfrom per wake-up. By default a short
    /// read (fewer bytes than asked for) ends the draining: the socket was empty then, and
    /// later bytes raise a new edge.
    #[arg(long)]
    drain_to_eagain: bool,

    /// Lab only: read once per wake-up instead of until EAGAIN, to watch edge-triggered stall.
    #[arg(long)]
    broken_read_once: bool,
}

fn main() {
    run_main(run);
}

/// How a wake-up reads: draining (to EAGAIN, or to a short read), or the lab's broken way.
#[derive(Clone, Copy)]
enum Reading {
    Drain(Drain),
    /// --broken-read-once: one read per wake-up, as the level-triggered server does.
    Once,
}

/// epoll hands back the 64-bit `data` we registered: the fd for connections, these for the rest.
const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;

fn run(cli: Cli) -> anyhow::Result<()> {
    let model = Model {
        name: "epoll-et",
        trace: "epoll_wait,epoll_ctl,accept4,recvfrom,sendto,close",
    };
    let server = Server::start(model, &cli.server)?;
    server.listener.set_nonblocking(true)?;
    let reading = match (cli.broken_read_once, cli.drain_to_eagain) {
        (true, _) => Reading::Once,
        (false, true) => Reading::Drain(Drain::ToEagain),
        (false, false) => Reading::Drain(Drain::UntilShortRead),
    };
    if cli.broken_read_once {
        let program = server.program();
        eprintln!(
            "{program}: --broken-read-once: reading once per wake-up; large messages will stall"
        );
    }

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(
        &server.listener,
        EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, LISTENER),
    )?;
    epoll.add(
        server.signals.wake_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS),
    )?;

    // Indexed by fd, so `recvfrom(7, ...)` in strace is `conns[&7]` here.
    let mut conns: HashMap<RawFd, EchoConn> = HashMap::new();
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut pause = AcceptPause::default();
    let mut accept_waiting = false;

    'serve: loop {
        // After EMFILE, connections wait in the accept queue and no new edge will announce them:
        // come back for them once a connection has closed or the pause is over.
        if accept_waiting && !pause.is_paused() {
            accept_waiting = accept_all(&server, &epoll, &mut conns, &mut pause, reading);
        }
        let timeout = EpollTimeout::try_from(pause.wait_timeout_ms()).unwrap_or(EpollTimeout::NONE);
        let ready = match epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue, // a signal arrived; epoll_wait is never restarted
            Err(e) => return Err(e.into()),
        };
        // Only the fds that changed come back, once each.
        for event in &events[..ready] {
            match event.data() {
                LISTENER => {
                    accept_waiting = accept_all(&server, &epoll, &mut conns, &mut pause, reading)
                }
                SIGNALS => {
                    if server.on_signal() {
                        break 'serve; // SIGINT or SIGTERM
                    }
                }
                fd => on_event(
                    &server,
                    &mut conns,
                    &mut pause,
                    fd as RawFd,
                    event.events(),
                    &mut scratch,
                    reading,
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
    epoll: &Epoll,
    conns: &mut HashMap<RawFd, EchoConn>,
    pause: &mut AcceptPause,
    reading: Reading,
) -> bool {
    loop {
        let stream = match server.accept_next(pause) {
            Accepted::Stream(stream) => stream,
            Accepted::Empty => return false,
            Accepted::Exhausted => return true,
        };
        let fd = stream.as_raw_fd();
        if let Err(e) = epoll.add(&stream, EpollEvent::new(interest(reading), fd as u64)) {
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

/// One connection had an edge: echo until the socket says EAGAIN, close when done.
fn on_event(
    server: &Server,
    conns: &mut HashMap<RawFd, EchoConn>,
    pause: &mut AcceptPause,
    fd: RawFd,
    flags: EpollFlags,
    scratch: &mut [u8],
    reading: Reading,
) {
    let Some(conn) = conns.get_mut(&fd) else {
        return;
    };
    let stats = &server.stats;
    // The lesson in one line: edge-triggered must drain the socket (EchoConn::drain: to EAGAIN,
    // or to a short read, which shows it empty just as well); reading once per wake-up
    // (EchoConn::step, right for level-triggered) leaves bytes nobody reports.
    let result = match reading {
        Reading::Once => conn.step(true, scratch, stats),
        Reading::Drain(rule) => {
            // A FIN that came with the last bytes raises no edge of its own after the short
            // read that took them: EPOLLRDHUP says it is there, so then read on until EOF.
            let closed = EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
            let rule = if flags.intersects(closed) {
                Drain::ToEagain
            } else {
                rule
            };
            conn.drain(scratch, stats, rule)
        }
    };
    match result {
        Ok(Want::Close) => {}
        Ok(_) => return, // registered for both directions: the next edge brings us back
        Err(_) => Stats::add(&stats.errors, 1), // ECONNRESET, EPIPE: only this connection ends
    }
    // Closing the fd also removes it from the epoll interest list (no other fd refers to it).
    conns.remove(&fd);
    pause.resume();
}

/// Edge-triggered interest never changes with the connection's wish: both directions, once.
/// Stopping at a short read also needs EPOLLRDHUP, to hear of a FIN that arrived with the
/// last bytes (see `on_event`).
fn interest(reading: Reading) -> EpollFlags {
    let both = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET;
    match reading {
        Reading::Drain(Drain::UntilShortRead) => both | EpollFlags::EPOLLRDHUP,
        _ => both,
    }
}
