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
    exit_on_error, is_fd_exhausted, parse_args, AcceptPause, EchoConn, Model, Server, ServerArgs,
    Stats, Want,
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
    let cli: Cli = parse_args();
    exit_on_error("echo-select", run(cli));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let model = Model {
        name: "select",
        trace: "pselect6,accept4,recvfrom,sendto,close",
    };
    let server = Server::start(model, &cli.server)?;
    server.listener.set_nonblocking(true)?;

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
        let mut nfds = server
            .signals
            .wake_fd()
            .as_raw_fd()
            .max(server.listener.as_raw_fd())
            + 1;
        for conn in conns.values() {
            nfds = nfds.max(conn.stream.as_raw_fd() + 1);
            match conn.want() {
                Want::Read => readable.insert(conn.stream.as_fd()),
                Want::ReadWrite => {
                    readable.insert(conn.stream.as_fd());
                    writable.insert(conn.stream.as_fd());
                }
                Want::Write => writable.insert(conn.stream.as_fd()),
                Want::Close => {}
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
        let signalled = readable.contains(server.signals.wake_fd());
        let acceptable = readable.contains(server.listener.as_fd());
        let ready: Vec<(RawFd, bool, bool)> = conns
            .iter()
            .map(|(&fd, conn)| {
                (
                    fd,
                    readable.contains(conn.stream.as_fd()),
                    writable.contains(conn.stream.as_fd()),
                )
            })
            .filter(|&(_, r, w)| r || w)
            .collect();

        if signalled && server.on_signal() {
            break 'serve; // SIGINT or SIGTERM
        }
        if acceptable {
            accept_all(&server, &mut conns, &mut pause, &mut refused_logged);
        }
        for (fd, can_read, _) in ready {
            on_event(
                &server.stats,
                &mut conns,
                &mut pause,
                fd,
                can_read,
                &mut scratch,
            );
        }
    }
    drop(conns); // close(2) every connection
    server.finish();
    Ok(())
}

/// Accepts every waiting connection. An fd that does not fit in an `fd_set` is closed at once:
/// nix's `FdSet::insert` would panic on it, and C's `FD_SET` would write past the bitmap.
fn accept_all(
    server: &Server,
    conns: &mut HashMap<RawFd, EchoConn>,
    pause: &mut AcceptPause,
    refused_logged: &mut bool,
) {
    loop {
        match server.listener.accept_nonblocking() {
            Ok(stream) if stream.as_raw_fd() as usize >= FD_SETSIZE => {
                if !std::mem::replace(refused_logged, true) {
                    eprintln!(
                        "echo-select: refusing connections on fd {} and above: select() cannot watch fds >= FD_SETSIZE ({FD_SETSIZE})",
                        stream.as_raw_fd()
                    );
                }
                Stats::add(&server.stats.refused, 1);
                drop(stream); // close(2): the client sees end of file
            }
            Ok(stream) => {
                conns.insert(
                    stream.as_raw_fd(),
                    EchoConn::new(stream, server.max_pending),
                );
                Stats::add(&server.stats.connections, 1);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if is_fd_exhausted(&e) => {
                pause.pause("echo-select", &e);
                return;
            }
            // ECONNABORTED and friends: that one connection is gone, the next may be fine.
            Err(e) => eprintln!("echo-select: accept4: {e}"),
        }
    }
}

/// One ready connection: read once if readable, write what is pending, close when done.
fn on_event(
    stats: &Stats,
    conns: &mut HashMap<RawFd, EchoConn>,
    pause: &mut AcceptPause,
    fd: RawFd,
    readable: bool,
    scratch: &mut [u8],
) {
    let Some(conn) = conns.get_mut(&fd) else {
        return;
    };
    match conn.step(readable, scratch, stats) {
        Ok(Want::Close) => {}
        Ok(_) => return, // the next turn's sets ask for what `want()` says
        Err(_) => Stats::add(&stats.errors, 1), // ECONNRESET, EPIPE: only this connection ends
    }
    conns.remove(&fd);
    pause.resume();
}
