//! # Lab 03: an echo server on `poll(2)`
//!
//! ```text
//! cargo run --release --bin echo-poll
//! strace -f -tt -e trace=poll,accept4,recvfrom,sendto,close -p PID
//! ```
//!
//! What to look for: every `poll([{fd=3, events=POLLIN}, {fd=5, ...}, ...], n, -1)` line lists
//! every connection. The kernel keeps nothing between calls, so the program rebuilds the array,
//! the kernel copies it in and checks every entry, and the program scans every `revents`: a wait
//! costs all the fds, ready or not. Unlike `select` there is no FD_SETSIZE limit, and the array
//! is not overwritten (`events` in, `revents` out). Like `select` it is level-triggered.
//!
//! Compare with the previous lab: `diff labs/02-select/main.rs labs/03-poll/main.rs`.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use clap::Parser;
use netlab_core::echo::READ_CHUNK;
use netlab_core::{
    run_main, AcceptPause, Accepted, EchoConn, Model, Server, ServerArgs, Stats, Want,
};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Echo server on poll(2): one array of (fd, events) in, the same array with revents out.
#[derive(Parser)]
#[command(name = "echo-poll", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() {
    run_main(run);
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let model = Model {
        name: "poll",
        trace: "poll,accept4,recvfrom,sendto,close",
    };
    let server = Server::start(model, &cli.server)?;
    server.listener.set_nonblocking(true)?;
    let listener_fd = server.listener.as_raw_fd();
    let signals_fd = server.signals.wake_fd().as_raw_fd();

    // Indexed by fd, so `recvfrom(7, ...)` in strace is `conns[&7]` here.
    let mut conns: HashMap<RawFd, EchoConn> = HashMap::new();
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut pause = AcceptPause::default();

    'serve: loop {
        // poll keeps no state between calls: the whole array is built, copied in and scanned
        // on every turn. After EMFILE the listener is left out for a while, or it would be
        // reported readable again at once and the loop would spin.
        let mut fds = Vec::with_capacity(conns.len() + 2);
        fds.push(PollFd::new(server.signals.wake_fd(), PollFlags::POLLIN));
        if !pause.is_paused() {
            fds.push(PollFd::new(server.listener.as_fd(), PollFlags::POLLIN));
        }
        for conn in conns.values() {
            fds.push(PollFd::new(conn.stream.as_fd(), interest(conn.want())));
        }
        let timeout = PollTimeout::try_from(pause.wait_timeout_ms()).unwrap_or(PollTimeout::NONE);
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue, // a signal arrived; poll is never restarted
            Err(e) => return Err(e.into()),
        }
        // Scan every entry for a non-empty `revents`: this scan, too, costs all the fds.
        let ready: Vec<(RawFd, PollFlags)> = fds
            .iter()
            .filter_map(|p| {
                let revents = p.revents().filter(|r| !r.is_empty())?;
                Some((p.as_fd().as_raw_fd(), revents))
            })
            .collect();
        drop(fds);

        for (fd, revents) in ready {
            match fd {
                fd if fd == listener_fd => accept_all(&server, &mut conns, &mut pause),
                fd if fd == signals_fd => {
                    if server.on_signal() {
                        break 'serve; // SIGINT or SIGTERM
                    }
                }
                fd => on_event(&server, &mut conns, &mut pause, fd, revents, &mut scratch),
            }
        }
    }
    drop(conns); // close(2) every connection
    server.finish();
    Ok(())
}

/// Accepts every waiting connection (until EAGAIN); it joins the array from the next turn on.
fn accept_all(server: &Server, conns: &mut HashMap<RawFd, EchoConn>, pause: &mut AcceptPause) {
    loop {
        let stream = match server.accept_next(pause) {
            Accepted::Stream(stream) => stream,
            Accepted::Empty | Accepted::Exhausted => return,
        };
        let fd = stream.as_raw_fd();
        let conn = EchoConn::new(stream, server.max_pending);
        conns.insert(fd, conn);
        Stats::add(&server.stats.connections, 1);
    }
}

/// One ready connection: read once if readable, write what is pending, close when done.
fn on_event(
    server: &Server,
    conns: &mut HashMap<RawFd, EchoConn>,
    pause: &mut AcceptPause,
    fd: RawFd,
    revents: PollFlags,
    scratch: &mut [u8],
) {
    let Some(conn) = conns.get_mut(&fd) else {
        return;
    };
    let stats = &server.stats;
    // POLLHUP and POLLERR come whether asked for or not; a read then reports EOF or the error.
    let readable = revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR);
    match conn.step(readable, scratch, stats) {
        Ok(Want::Close) => {}
        Ok(_) => return, // the next turn's array asks for what `want()` says
        Err(_) => Stats::add(&stats.errors, 1), // ECONNRESET, EPIPE: only this connection ends
    }
    conns.remove(&fd);
    pause.resume();
}

/// The intent, in poll's vocabulary.
fn interest(want: Want) -> PollFlags {
    match want {
        Want::Read => PollFlags::POLLIN,
        Want::ReadWrite => PollFlags::POLLIN | PollFlags::POLLOUT,
        Want::Write => PollFlags::POLLOUT,
        Want::Close => PollFlags::empty(),
    }
}
