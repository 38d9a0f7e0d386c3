//! # Lab 04: an echo server on `epoll`, level-triggered
//!
//! ```text
//! cargo run --release --bin echo-epoll-lt
//! strace -f -tt -e trace=epoll_wait,epoll_ctl,accept4,recvfrom,sendto,close -p PID
//! ```
//!
//! What to look for: the interest list lives in the kernel. Each connection is added once
//! (`epoll_ctl(EPOLL_CTL_ADD)`), and `epoll_wait` returns only the fds that are ready, so a wait
//! costs the ready fds, not all of them (compare `pselect6` and `poll`, whose whole set goes in on
//! every call). The price: an `epoll_ctl(EPOLL_CTL_MOD)` each time a connection's wish changes
//! between "read" and "read or write", which can make epoll slower than `poll` for a few busy
//! connections.
//!
//! Level-triggered means "tell me again while it is true": one `recvfrom` per wake-up is
//! enough, because unread bytes make the next `epoll_wait` return at once.
//!
//! Compare with the previous lab: `diff labs/03-poll/main.rs labs/04-epoll-lt/main.rs`.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};

use clap::Parser;
use netlab_core::echo::READ_CHUNK;
use netlab_core::{
    run_main, AcceptPause, Accepted, EchoConn, Model, Server, ServerArgs, Stats, Want,
};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Echo server on epoll, level-triggered: the kernel keeps the interest list and a ready list.
#[derive(Parser)]
#[command(name = "echo-epoll-lt", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() {
    run_main(run);
}

/// epoll hands back the 64-bit `data` we registered: the fd for connections, these for the rest.
const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;

/// A connection and the interest it is registered with, so we only call `epoll_ctl` on change.
struct Conn {
    echo: EchoConn,
    registered: Want,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let model = Model {
        name: "epoll-lt",
        trace: "epoll_wait,epoll_ctl,accept4,recvfrom,sendto,close",
    };
    let server = Server::start(model, &cli.server)?;
    server.listener.set_nonblocking(true)?;

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(
        &server.listener,
        EpollEvent::new(EpollFlags::EPOLLIN, LISTENER),
    )?;
    epoll.add(
        server.signals.wake_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS),
    )?;

    // Indexed by fd, so `recvfrom(7, ...)` in strace is `conns[&7]` here.
    let mut conns: HashMap<RawFd, Conn> = HashMap::new();
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut pause = AcceptPause::default();
    let mut listener_watched = true;

    'serve: loop {
        // After EMFILE the listener stays readable (the connection waits in the accept queue):
        // stop watching it for a while, or this loop would spin.
        let watch_listener = !pause.is_paused();
        if watch_listener != listener_watched {
            listener_watched = watch_listener;
            let flags = if watch_listener {
                EpollFlags::EPOLLIN
            } else {
                EpollFlags::empty()
            };
            epoll.modify(&server.listener, &mut EpollEvent::new(flags, LISTENER))?;
        }
        let timeout = EpollTimeout::try_from(pause.wait_timeout_ms()).unwrap_or(EpollTimeout::NONE);
        let ready = match epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue, // a signal arrived; epoll_wait is never restarted
            Err(e) => return Err(e.into()),
        };
        // Only the ready fds come back: nothing to scan.
        for event in &events[..ready] {
            match event.data() {
                LISTENER => accept_all(&server, &epoll, &mut conns, &mut pause),
                SIGNALS => {
                    if server.on_signal() {
                        break 'serve; // SIGINT or SIGTERM
                    }
                }
                fd => on_event(
                    &server,
                    &epoll,
                    &mut conns,
                    &mut pause,
                    fd as RawFd,
                    event.events(),
                    &mut scratch,
                ),
            }
        }
    }
    drop(conns); // close(2) every connection
    server.finish();
    Ok(())
}

/// Accepts every waiting connection (until EAGAIN; level-triggered would also come back for
/// the rest) and registers each for reading.
fn accept_all(
    server: &Server,
    epoll: &Epoll,
    conns: &mut HashMap<RawFd, Conn>,
    pause: &mut AcceptPause,
) {
    loop {
        let stream = match server.accept_next(pause) {
            Accepted::Stream(stream) => stream,
            Accepted::Empty | Accepted::Exhausted => return,
        };
        let fd = stream.as_raw_fd();
        if let Err(e) = epoll.add(&stream, EpollEvent::new(interest(Want::Read), fd as u64)) {
            // ENOSPC (fs.epoll.max_user_watches) or ENOMEM: this connection only.
            let program = server.program();
            eprintln!("{program}: epoll_ctl(EPOLL_CTL_ADD, {fd}): {e}; closing it");
            continue;
        }
        let conn = Conn {
            echo: EchoConn::new(stream, server.max_pending),
            registered: Want::Read,
        };
        conns.insert(fd, conn);
        Stats::add(&server.stats.connections, 1);
    }
}

/// One ready connection: read once if readable, write what is pending, re-register on change.
fn on_event(
    server: &Server,
    epoll: &Epoll,
    conns: &mut HashMap<RawFd, Conn>,
    pause: &mut AcceptPause,
    fd: RawFd,
    flags: EpollFlags,
    scratch: &mut [u8],
) {
    let Some(conn) = conns.get_mut(&fd) else {
        return;
    };
    let stats = &server.stats;
    // EPOLLHUP and EPOLLERR come whether asked for or not; a read then reports EOF or the error.
    let readable =
        flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
    match conn.echo.step(readable, scratch, stats) {
        Ok(Want::Close) => {}
        Ok(want) if want == conn.registered => return,
        // The wish changed: tell the kernel (EPOLL_CTL_MOD). If that fails (ENOMEM), this
        // connection ends, as when its EPOLL_CTL_ADD failed.
        Ok(want) => {
            let mut event = EpollEvent::new(interest(want), fd as u64);
            match epoll.modify(&conn.echo.stream, &mut event) {
                Ok(()) => {
                    conn.registered = want;
                    return;
                }
                Err(e) => {
                    let program = server.program();
                    eprintln!("{program}: epoll_ctl(EPOLL_CTL_MOD, {fd}): {e}; closing it");
                    Stats::add(&stats.errors, 1);
                }
            }
        }
        Err(_) => Stats::add(&stats.errors, 1), // ECONNRESET, EPIPE: only this connection ends
    }
    // Closing the fd also removes it from the epoll interest list (no other fd refers to it).
    conns.remove(&fd);
    pause.resume();
}

/// The intent, in epoll's vocabulary.
fn interest(want: Want) -> EpollFlags {
    match want {
        Want::Read => EpollFlags::EPOLLIN,
        Want::ReadWrite => EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT,
        Want::Write => EpollFlags::EPOLLOUT,
        Want::Close => EpollFlags::empty(),
    }
}
