//! # Lab 13: one epoll loop per core, each with its own `SO_REUSEPORT` listener
//!
//! ```text
//! cargo run --release --bin echo-reuseport                 # a loop per online core
//! cargo run --release --bin echo-reuseport -- --threads 4
//! strace -f -tt -e trace=epoll_wait,epoll_ctl,accept4,recvfrom,sendto,close -p PID
//! ss -ltnp 'sport = :7000'                                 # one LISTEN line per thread
//! ```
//!
//! What to look for: N threads, each running lab 04's level-triggered loop on its own listening
//! socket, all bound to the same port. `SO_REUSEPORT` (set before `bind`) puts the sockets in one
//! group, and the kernel picks a member for each new connection by a hash of its addresses, so
//! the threads share nothing: no lock, no shared accept queue, no thundering herd. `ss -ltn`
//! lists the port N times; `strace -f` shows each thread's `accept4` on its own fd; the summary
//! on stderr says how many connections each thread got.
//!
//! The hash spreads connections, not load: one busy connection stays on its thread, and with
//! few connections the split can be uneven. On a 2-core machine the load generator needs a core
//! too, so two loops are what scale here; `loadgen compare` says where both ran.
//!
//! `--unix PATH`: Unix-domain sockets have no `SO_REUSEPORT`, so the threads share the one
//! listener. Each adds it to its own epoll with `EPOLLEXCLUSIVE`, so a new connection wakes one
//! waiting thread (or a few), not all of them, and whichever wakes accepts.
//!
//! Compare with lab 04: `diff labs/04-epoll-lt/main.rs labs/13-reuseport/main.rs` is the loop
//! made per thread, plus the threads and the listeners.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Parser;
use netlab_core::echo::READ_CHUNK;
use netlab_core::{
    exit_on_error, is_fd_exhausted, parse_args, AcceptPause, EchoConn, Listener, Model, Server,
    ServerArgs, Stats, Want,
};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Echo server with one epoll loop per thread, each on its own SO_REUSEPORT listener.
#[derive(Parser)]
#[command(name = "echo-reuseport", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// Event loops (threads), each with its own listener [default: the number of online cores]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

fn main() {
    let cli: Cli = parse_args();
    exit_on_error("echo-reuseport", run(cli));
}

/// epoll hands back the 64-bit `data` we registered: the fd for connections, these for the rest.
const LISTENER: u64 = u64::MAX;
const STOP: u64 = u64::MAX - 1;

/// A connection and the interest it is registered with, so we only call `epoll_ctl` on change.
struct Conn {
    echo: EchoConn,
    registered: Want,
}

/// What one thread's loop needs: the shared server (counters), its own listener, the stop pipe.
struct Worker<'a> {
    server: &'a Server,
    listener: &'a Listener,
    /// Unix socket: the listener is shared, so it is watched with EPOLLEXCLUSIVE.
    shared_listener: bool,
    stop: &'a UnixStream,
    accepted: &'a AtomicU64,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let model = Model {
        name: "reuseport",
        trace: "epoll_wait,epoll_ctl,accept4,recvfrom,sendto,close",
    };
    let threads = match cli.threads {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let each = match cli.server.unix {
        Some(_) => "sharing one Unix listener (EPOLLEXCLUSIVE)",
        None => "each with its own SO_REUSEPORT listener",
    };
    // Every loop's listener is bound before the "listening" line, so the first clients are
    // spread too: thread 0 serves the one Server::start keeps, the others bind their own on the
    // same port (port 0 has become a real one by then). A Unix socket is shared instead.
    let mut own_listeners = Vec::new();
    let server = Server::start_binding(model, &cli.server, |addr, backlog| {
        let first = bind_first(addr, backlog)?;
        let addr = SocketAddr::new(addr.ip(), first.client_address()?.port());
        for _ in 1..threads {
            own_listeners.push(Listener::bind_tcp_reuse_port(addr, backlog)?);
        }
        Ok(first)
    })?;
    eprintln!("echo-reuseport: {threads} event loops, {each}");
    let shared_listener = matches!(server.listener, Listener::Unix(..));
    let listeners: Vec<&Listener> = (0..threads)
        .map(|i| match i {
            0 => &server.listener,
            i => own_listeners.get(i - 1).unwrap_or(&server.listener),
        })
        .collect();
    for listener in &listeners {
        listener.set_nonblocking(true)?;
    }
    // One byte written here and never read stops every loop: each watches the read end, and a
    // level-triggered epoll reports it to all of them for as long as it stays unread.
    let (stop_read, stop_write) = UnixStream::pair()?;
    let accepted: Vec<AtomicU64> = (0..threads).map(|_| AtomicU64::new(0)).collect();

    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut loops = Vec::new();
        for (i, (listener, accepted)) in listeners.iter().zip(&accepted).enumerate() {
            let worker = Worker {
                server: &server,
                listener,
                shared_listener,
                stop: &stop_read,
                accepted,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("loop-{i}"))
                .spawn_scoped(scope, move || worker.run());
            match spawned {
                Ok(handle) => loops.push(handle),
                Err(e) => {
                    stop_all(&stop_write); // the scope joins the loops already running
                    return Err(e.into());
                }
            }
        }
        // The main thread only waits for signals: SIGUSR1 prints the counters, SIGINT or
        // SIGTERM stops every loop.
        loop {
            server.signals.wait();
            if server.signals.take_report() {
                server.report();
            }
            if server.signals.stop_requested() {
                break;
            }
        }
        stop_all(&stop_write);
        for handle in loops {
            handle.join().expect("an event loop panicked")?;
        }
        Ok(())
    })?;
    let per_thread: Vec<String> = accepted
        .iter()
        .map(|n| n.load(Ordering::Relaxed).to_string())
        .collect();
    eprintln!(
        "echo-reuseport: connections per loop: {}",
        per_thread.join(" ")
    );
    drop(own_listeners);
    server.finish();
    Ok(())
}

/// Binds the first listener. SO_REUSEPORT lets any socket of the same user join the group,
/// another echo-reuseport too, which would then silently take half the connections. So first
/// make sure nobody holds the port: a plain `bind(2)` (SO_REUSEADDR, no SO_REUSEPORT) fails with
/// EADDRINUSE if a listener does. Port 0 needs no check: the kernel picks an unused port.
fn bind_first(addr: SocketAddr, backlog: i32) -> std::io::Result<Listener> {
    if addr.port() != 0 {
        let probe = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
    } // the probe closes here, leaving the port to the real listener
    Listener::bind_tcp_reuse_port(addr, backlog)
}

/// Writes the stop byte (never read, so every loop sees it).
fn stop_all(stop_write: &UnixStream) {
    let _ = (&*stop_write).write_all(b"S");
}

impl Worker<'_> {
    /// Lab 04's loop, for this thread's listener. A loop that fails raises SIGTERM, so the
    /// main thread stops the others and the error is reported.
    fn run(self) -> anyhow::Result<()> {
        let result = self.serve();
        if result.is_err() {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
        }
        result
    }

    fn serve(&self) -> anyhow::Result<()> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            self.listener,
            EpollEvent::new(self.listen_flags(), LISTENER),
        )?;
        epoll.add(self.stop, EpollEvent::new(EpollFlags::EPOLLIN, STOP))?;

        // Indexed by fd, so `recvfrom(7, ...)` in strace is `conns[&7]` here.
        let mut conns: HashMap<RawFd, Conn> = HashMap::new();
        let mut scratch = vec![0u8; READ_CHUNK];
        let mut events = vec![EpollEvent::empty(); 1024];
        let mut pause = AcceptPause::default();
        let mut listener_watched = true;

        'serve: loop {
            // After EMFILE the listener stays readable: leave it out for a while. (Deleted and
            // added again rather than modified: EPOLLEXCLUSIVE allows no EPOLL_CTL_MOD.)
            let watch_listener = !pause.is_paused();
            if watch_listener != listener_watched {
                listener_watched = watch_listener;
                if watch_listener {
                    epoll.add(
                        self.listener,
                        EpollEvent::new(self.listen_flags(), LISTENER),
                    )?;
                } else {
                    epoll.delete(self.listener)?;
                }
            }
            let timeout =
                EpollTimeout::try_from(pause.wait_timeout_ms()).unwrap_or(EpollTimeout::NONE);
            let ready = match epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue, // a signal arrived; epoll_wait is never restarted
                Err(e) => return Err(e.into()),
            };
            for event in &events[..ready] {
                match event.data() {
                    LISTENER => self.accept_all(&epoll, &mut conns, &mut pause),
                    STOP => break 'serve,
                    fd => self.on_event(
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
        Ok(()) // dropping `conns` closes every connection of this loop
    }

    /// A listener of its own: plain EPOLLIN. A shared one: EPOLLEXCLUSIVE, so that a connection
    /// wakes one of the loops rather than every one.
    fn listen_flags(&self) -> EpollFlags {
        match self.shared_listener {
            true => EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE,
            false => EpollFlags::EPOLLIN,
        }
    }

    /// Accepts every waiting connection and registers it for reading. With a shared listener
    /// another loop may have taken them first: EAGAIN at once is normal then.
    fn accept_all(&self, epoll: &Epoll, conns: &mut HashMap<RawFd, Conn>, pause: &mut AcceptPause) {
        loop {
            match self.listener.accept_nonblocking() {
                Ok(stream) => {
                    let fd = stream.as_raw_fd();
                    let flags = interest(Want::Read);
                    if let Err(e) = epoll.add(&stream, EpollEvent::new(flags, fd as u64)) {
                        // ENOSPC (fs.epoll.max_user_watches) or ENOMEM: this connection only.
                        eprintln!(
                            "echo-reuseport: epoll_ctl(EPOLL_CTL_ADD, {fd}): {e}; closing it"
                        );
                        continue;
                    }
                    let echo = EchoConn::new(stream, self.server.max_pending);
                    let registered = Want::Read;
                    conns.insert(fd, Conn { echo, registered });
                    Stats::add(&self.server.stats.connections, 1);
                    self.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if is_fd_exhausted(&e) => {
                    pause.pause("echo-reuseport", &e);
                    return;
                }
                // ECONNABORTED and friends: that one connection is gone, the next may be fine.
                Err(e) => eprintln!("echo-reuseport: accept4: {e}"),
            }
        }
    }

    /// One ready connection: read once if readable, write what is pending, re-register on
    /// change. Any failure ends only this connection.
    fn on_event(
        &self,
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
        let stats = &self.server.stats;
        // EPOLLHUP and EPOLLERR come whether asked for or not; a read then reports EOF or the
        // error.
        let readable =
            flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
        match conn.echo.step(readable, scratch, stats) {
            Ok(Want::Close) => {}
            Ok(want) if want == conn.registered => return,
            Ok(want) => {
                let mut event = EpollEvent::new(interest(want), fd as u64);
                match epoll.modify(&conn.echo.stream, &mut event) {
                    Ok(()) => {
                        conn.registered = want;
                        return;
                    }
                    Err(_) => Stats::add(&stats.errors, 1), // ENOMEM: only this connection ends
                }
            }
            Err(_) => Stats::add(&stats.errors, 1), // ECONNRESET, EPIPE: only this one ends
        }
        // Closing the fd also removes it from the epoll interest list (no other fd refers to it).
        conns.remove(&fd);
        pause.resume();
    }
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
