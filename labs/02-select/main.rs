//! # Lab 02: an echo server on `select(2)`
//!
//! ```text
//! cargo run --release --bin echo-select
//! strace -f -tt -e trace=pselect6,accept4,recvfrom,sendto,close -p PID
//! ```
//!
//! What to look for: glibc's `select()` is the `pselect6` syscall. Its arguments are bitmaps
//! (`fd_set`) of FD_SETSIZE = 1024 bits: strace prints them as `[3 5 7]` going in and the ready
//! subset coming back. The kernel overwrites the sets with the answer, so the program rebuilds
//! them on every turn, the kernel checks every fd up to `nfds`, and the program tests every fd
//! against the answer: a wait costs all the fds, ready or not. An fd of 1024 or more does not fit
//! in the bitmap at all: this server refuses such connections (closed, counted as `refused`).
//!
//! Compare with the previous lab: `diff labs/01-blocking/main.rs labs/02-select/main.rs`, and
//! with the next: `diff labs/02-select/main.rs labs/03-poll/main.rs`.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use clap::Parser;
use netlab_core::echo::READ_CHUNK;
use netlab_core::{
    run_main, AcceptPause, Accepted, EchoConn, Model, Server, ServerArgs, Stats, Want,
};
use nix::errno::Errno;
use nix::sys::select::{select, FdSet, FD_SETSIZE};
use nix::sys::time::{TimeVal, TimeValLike};

/// Echo server on select(2): bitmaps of at most 1024 fds, rebuilt on every call.
#[derive(Parser)]
#[command(name = "echo-select", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() {
    run_main(run);
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let model = Model {
        name: "select",
        trace: "pselect6,accept4,recvfrom,sendto,close",
    };
    let server = Server::start(model, &cli.server)?;
    server.listener.set_nonblocking(true)?;
    let listener_fd = server.listener.as_raw_fd();
    let signals_fd = server.signals.wake_fd().as_raw_fd();

    // Indexed by fd, so `recvfrom(7, ...)` in strace is `conns[&7]` here.
    let mut conns: HashMap<RawFd, EchoConn> = HashMap::new();
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut pause = AcceptPause::default();
    let mut refused_logged = false;

    'serve: loop {
        // select() overwrites the sets with its answer: rebuild them on every turn. After EMFILE
        // the listener is left out for a while, or it would be readable again at once and the
        // loop would spin.
        let mut readable = FdSet::new();
        let mut writable = FdSet::new();
        readable.insert(server.signals.wake_fd());
        if !pause.is_paused() {
            readable.insert(server.listener.as_fd());
        }
        // select's first argument is the highest fd plus one: the kernel checks every fd
        // below it. (The listener and signal pipe are opened first, so they are lower.)
        let mut nfds = signals_fd.max(listener_fd) + 1;
        for conn in conns.values() {
            let fd = conn.stream.as_fd();
            nfds = nfds.max(fd.as_raw_fd() + 1);
            let (read, write) = interest(conn.want());
            if read {
                readable.insert(fd);
            }
            if write {
                writable.insert(fd);
            }
        }
        let mut timeout = match pause.wait_timeout_ms() {
            -1 => None,
            ms => Some(TimeVal::milliseconds(ms.into())),
        };
        match select(nfds, &mut readable, &mut writable, None, timeout.as_mut()) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue, // a signal arrived; select is never restarted
            Err(e) => return Err(e.into()),
        }
        // Test every fd we own against the answer: this scan, too, costs all the fds.
        let owned = [server.signals.wake_fd(), server.listener.as_fd()];
        let ready: Vec<(RawFd, bool)> = owned
            .into_iter()
            .chain(conns.values().map(|conn| conn.stream.as_fd()))
            .filter_map(|fd| {
                let can_read = readable.contains(fd);
                (can_read || writable.contains(fd)).then_some((fd.as_raw_fd(), can_read))
            })
            .collect();

        for (fd, can_read) in ready {
            match fd {
                fd if fd == listener_fd => {
                    accept_all(&server, &mut conns, &mut pause, &mut refused_logged)
                }
                fd if fd == signals_fd => {
                    if server.on_signal() {
                        break 'serve; // SIGINT or SIGTERM
                    }
                }
                fd => on_event(&server, &mut conns, &mut pause, fd, can_read, &mut scratch),
            }
        }
    }
    drop(conns); // close(2) every connection
    server.finish();
    Ok(())
}

/// Accepts every waiting connection (until EAGAIN). An fd that does not fit in an `fd_set` is
/// closed at once: nix's `FdSet::insert` would panic on it, and C's `FD_SET` would write past
/// the bitmap.
fn accept_all(
    server: &Server,
    conns: &mut HashMap<RawFd, EchoConn>,
    pause: &mut AcceptPause,
    refused_logged: &mut bool,
) {
    loop {
        let stream = match server.accept_next(pause) {
            Accepted::Stream(stream) => stream,
            Accepted::Empty | Accepted::Exhausted => return,
        };
        let fd = stream.as_raw_fd();
        if fd as usize >= FD_SETSIZE {
            if !std::mem::replace(refused_logged, true) {
                let program = server.program();
                eprintln!("{program}: refusing connections on fd {fd} and above: select() cannot watch fds >= FD_SETSIZE ({FD_SETSIZE})");
            }
            Stats::add(&server.stats.refused, 1);
            continue; // drop: close(2), the client sees end of file
        }
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
    readable: bool,
    scratch: &mut [u8],
) {
    let Some(conn) = conns.get_mut(&fd) else {
        return;
    };
    let stats = &server.stats;
    // A closed or failed socket shows as readable; a read then reports EOF or the error.
    match conn.step(readable, scratch, stats) {
        Ok(Want::Close) => {}
        Ok(_) => return, // the next turn's sets ask for what `want()` says
        Err(_) => Stats::add(&stats.errors, 1), // ECONNRESET, EPIPE: only this connection ends
    }
    conns.remove(&fd);
    pause.resume();
}

/// The intent, in select's vocabulary: which of the two sets the fd goes in (read, write).
fn interest(want: Want) -> (bool, bool) {
    match want {
        Want::Read => (true, false),
        Want::ReadWrite => (true, true),
        Want::Write => (false, true),
        Want::Close => (false, false),
    }
}
