//! # Lab 06: a file server, `sendfile(2)` beside `read(2)` + `write(2)`
//!
//! ```text
//! cargo run --release --bin fileserve -- --root . --mode sendfile      # or --mode copy
//! curl -v http://127.0.0.1:8080/Cargo.toml
//! strace -f -e trace=openat2,newfstatat,getdents64,sendfile,pread64,write,sendto,recvfrom,shutdown,epoll_wait,epoll_ctl,close -p PID
//! ```
//!
//! What to look for: one request for a 1 MiB file, in each mode.
//!
//! - `--mode sendfile`: `sendto(fd, "HTTP/1.1 200 OK...", MSG_NOSIGNAL)` for the head,
//!   then a few `sendfile(fd, file, [offset], count)` calls, each moving what fits in the socket
//!   buffer. The file's bytes never enter this process: the kernel hands page-cache pages to
//!   the socket. No buffer of ours appears anywhere in [`send_body_sendfile`].
//! - `--mode copy`: `pread64(file, buf, 65536, offset)` then `write(fd, buf, 65536)`, over and
//!   over: every byte is copied from the page cache into `buf` and from `buf` into the socket
//!   buffer, and costs two syscalls per 64 KiB. That is the extra system CPU per GiB the
//!   comparison script (scripts/compare-fileserve.sh) measures.
//!
//! This file is an epoll loop that moves a file to a socket, two ways. What to answer (the
//! status, the head, which range of which file) is decided in netlab_http::respond;
//! `openat2(..., RESOLVE_BENEATH)` keeps every open inside `--root` (netlab_http::resolve).
//! The loop is epoll, **level-triggered**, as in lab 04: a connection is registered for EPOLLIN
//! while it waits for a request and for EPOLLOUT while it sends one; pipelined requests wait in
//! its input buffer and are answered in order.
//!
//! Lessons on the side: delete a file while it downloads and the download completes (the open
//! fd keeps the inode; `ls -l /proc/PID/fd` shows it `(deleted)`); truncate it and `sendfile`
//! returns 0 before the end, so the connection is closed (waiting for EPOLLOUT again would
//! spin: the socket stays writable). And closing a socket with unread input makes the kernel
//! send a RST, which can destroy the answer the client has not read yet: so a connection the
//! server ends first *lingers* (netlab_http::connection says how).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use netlab_core::{
    listen_tcp, parse_duration, parse_size, raise_fd_limit, run_main, AcceptPause, Accepted, Model,
    Server, Stats, Summary,
};
use netlab_http::connection::{Connection, Expired, Next, Timeouts};
use netlab_http::response::error_response;
use netlab_http::transfer::{send_bytes, Moved};
use netlab_http::{FileRange, Root, Site};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Serve a directory over HTTP/1.1 from one epoll loop, with sendfile(2) or read(2)+write(2).
#[derive(Parser)]
#[command(name = "fileserve", version)]
struct Cli {
    /// Directory to serve. Nothing outside it is opened, whatever the request says.
    #[arg(long, default_value = ".")]
    root: PathBuf,

    /// TCP address to listen on; port 0 picks a free port (the "listening" line says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,

    /// How file bytes reach the socket.
    #[arg(long, value_enum, default_value_t = Mode::Sendfile)]
    mode: Mode,

    /// listen(2) backlog (capped by the kernel at net.core.somaxconn).
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(i32).range(1..))]
    backlog: i32,

    /// --mode copy: the user-space buffer each connection reads into and writes from.
    #[arg(long, value_name = "BYTES", default_value = "64KiB", value_parser = parse_copy_buffer)]
    copy_buffer: usize,

    /// Also serve names that start with a dot (.git, .env). Off by default (403): a file
    /// server started in a repository must not publish the repository.
    #[arg(long)]
    allow_hidden: bool,

    /// A request head must be complete this long after its first byte (else 408 and close).
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,

    /// A response that makes no progress this long (the client stopped reading) is dropped.
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_duration)]
    send_timeout: Duration,

    /// An idle keep-alive connection is closed after this long.
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = parse_duration)]
    keepalive_timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// sendfile(2): page cache to socket inside the kernel, no copy through this process.
    Sendfile,
    /// pread(2) into a buffer, write(2) from it: two copies through user space.
    Copy,
}

/// `--copy-buffer`: at least one byte (0 could never move anything).
fn parse_copy_buffer(text: &str) -> Result<usize, String> {
    match parse_size(text)? {
        0 => Err("must be at least 1 byte".into()),
        n => Ok(n),
    }
}

fn main() {
    run_main(run);
}

/// epoll hands back the 64-bit `data` we registered: the fd for connections, these for the rest.
const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;

/// One connection: its HTTP state (netlab_http::Connection: input, response, deadlines), the
/// copy buffer, and the interest it is registered with, so `epoll_ctl` runs only on change.
struct Conn {
    http: Connection,
    /// --mode copy only: the user-space buffer (allocated on the first body).
    copy: Option<CopyBuffer>,
    registered: EpollFlags,
}

/// How the loop's helpers see the server.
struct Ctx {
    mode: Mode,
    site: Site,
    copy_buffer: usize,
}

/// The summary line's fields: `connections=.. requests=.. bytes=.. errors=.. timeouts=..
/// truncated=..`.
#[derive(Default)]
struct FileStats {
    connections: AtomicU64,
    requests: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    truncated: AtomicU64,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let root = Root::new(&cli.root)
        .with_context(|| format!("cannot serve --root {}", cli.root.display()))?;
    let model = Model {
        name: match cli.mode {
            Mode::Sendfile => "fileserve-sendfile",
            Mode::Copy => "fileserve-copy",
        },
        trace:
            "openat2,newfstatat,getdents64,sendfile,pread64,write,sendto,recvfrom,shutdown,epoll_wait,epoll_ctl,close",
    };
    let listener = listen_tcp(cli.addr, cli.backlog)?;
    // One fd per connection and one per file being sent: take all the kernel allows.
    let fd_limit = raise_fd_limit();
    let served = root.path.display().to_string();
    let server = Server::start_with(
        model,
        "fileserve",
        listener,
        FileStats::default(),
        cli.backlog,
        |target, pid| try_lines(target, pid, &served, fd_limit),
    )?;
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

    let ctx = Ctx {
        mode: cli.mode,
        site: Site {
            root,
            allow_hidden: cli.allow_hidden,
        },
        copy_buffer: cli.copy_buffer,
    };
    let timeouts = Timeouts {
        header: cli.header_timeout,
        send: cli.send_timeout,
        idle: cli.keepalive_timeout,
    };
    // Indexed by fd, so `sendfile(7, ...)` in strace is `conns[&7]` here.
    let mut conns: HashMap<RawFd, Conn> = HashMap::new();
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut pause = AcceptPause::default();
    let mut listener_watched = true;
    let mut next_sweep = Instant::now() + timeouts.sweep_every();

    'serve: loop {
        // After EMFILE the listener stays readable: stop watching it for a while (see lab 04).
        if listener_watched == pause.is_paused() {
            listener_watched = !listener_watched;
            let flags = if listener_watched {
                EpollFlags::EPOLLIN
            } else {
                EpollFlags::empty()
            };
            epoll.modify(&server.listener, &mut EpollEvent::new(flags, LISTENER))?;
        }
        let timeout = wait_timeout(&pause, &conns, next_sweep);
        let ready = match epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue, // a signal arrived; epoll_wait is never restarted
            Err(e) => return Err(e.into()),
        };
        for event in &events[..ready] {
            match event.data() {
                LISTENER => accept_all(&server, &epoll, &mut conns, &mut pause),
                SIGNALS => {
                    if server.on_signal() {
                        break 'serve; // SIGINT or SIGTERM
                    }
                }
                fd => on_event(
                    &ctx,
                    &server.stats,
                    &epoll,
                    &mut conns,
                    &mut pause,
                    fd as RawFd,
                    event.events(),
                ),
            }
        }
        if Instant::now() >= next_sweep {
            close_expired(&server.stats, &mut conns, &mut pause, &timeouts);
            next_sweep = Instant::now() + timeouts.sweep_every();
        }
    }
    drop(conns); // close(2) every connection and every open file
    server.finish();
    Ok(())
}

/// Accepts every waiting connection (until EAGAIN) and registers it for reading its first
/// request.
fn accept_all(
    server: &Server<FileStats>,
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
        // A short last segment (a 304, the end of a file) must not wait for the ACK of the one
        // before it (Nagle): on keep-alive that costs a delayed ACK, ~40 ms.
        let _ = nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::TcpNoDelay, &true);
        if let Err(e) = epoll.add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, fd as u64)) {
            // ENOSPC (fs.epoll.max_user_watches) or ENOMEM: this connection only.
            eprintln!("fileserve: epoll_ctl(EPOLL_CTL_ADD, {fd}): {e}; closing it");
            continue;
        }
        let conn = Conn {
            http: Connection::new(stream),
            copy: None,
            registered: EpollFlags::EPOLLIN,
        };
        conns.insert(fd, conn);
        Stats::add(&server.stats.connections, 1);
    }
}

/// One ready connection: read a request if it waits for one, send what is due, and register
/// for whichever it needs next.
fn on_event(
    ctx: &Ctx,
    stats: &FileStats,
    epoll: &Epoll,
    conns: &mut HashMap<RawFd, Conn>,
    pause: &mut AcceptPause,
    fd: RawFd,
    flags: EpollFlags,
) {
    let Some(conn) = conns.get_mut(&fd) else {
        return;
    };
    // EPOLLHUP and EPOLLERR come whether asked for or not; the next read or send reports them.
    let readable =
        flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
    let result = if conn.http.is_lingering() {
        Ok(conn.http.linger())
    } else {
        serve(ctx, stats, conn, readable)
    };
    match result {
        Ok(true) => {}
        Ok(false) => return close(conns, pause, fd),
        // ECONNRESET, EPIPE: only this connection ends.
        Err(_) => {
            Stats::add(&stats.errors, 1);
            return close(conns, pause, fd);
        }
    }
    let want = interest(conn);
    if want != conn.registered {
        if let Err(e) = epoll.modify(&conn.http.stream, &mut EpollEvent::new(want, fd as u64)) {
            // ENOMEM: this connection only, as for a failed add.
            eprintln!("fileserve: epoll_ctl(EPOLL_CTL_MOD, {fd}): {e}; closing it");
            return close(conns, pause, fd);
        }
        conn.registered = want;
    }
}

/// `close(2)`: also leaves the epoll interest list, and closes the file being sent.
fn close(conns: &mut HashMap<RawFd, Conn>, pause: &mut AcceptPause, fd: RawFd) {
    conns.remove(&fd);
    pause.resume();
}

/// Reads (once: level-triggered), then answers complete requests in the order they came until
/// the socket is full or no complete request is left. Returns false when the connection is done.
fn serve(ctx: &Ctx, stats: &FileStats, conn: &mut Conn, readable: bool) -> io::Result<bool> {
    if conn.http.response.is_none() && readable {
        conn.http.read_requests()?;
    }
    loop {
        if conn.http.response.is_none() {
            match conn.http.next_response(&ctx.site) {
                Next::Respond { request } => Stats::add(&stats.requests, request as u64),
                Next::Wait => return Ok(true),
                Next::Close => return Ok(false),
            }
        }
        match send_response(ctx, stats, conn)? {
            Sent::Blocked => return Ok(true),
            Sent::Truncated => {
                Stats::add(&stats.truncated, 1);
                return Ok(false);
            }
            // The connection ends after this answer: it lingers (EPOLLIN) until the client
            // closes, unless the client closed first.
            Sent::Done if !conn.http.sent() => return Ok(conn.http.is_lingering()),
            Sent::Done => {}
        }
    }
}

/// The intent, in epoll's vocabulary: a response in flight waits for room in the socket
/// buffer; otherwise wait for the next request's bytes (or, lingering, for bytes to discard).
fn interest(conn: &Conn) -> EpollFlags {
    if conn.http.response.is_some() {
        EpollFlags::EPOLLOUT
    } else {
        EpollFlags::EPOLLIN
    }
}

// ---------------------------------------------------------------------------------------------
// The lesson: two ways to move `body.pos..body.end` of a file into a socket. Each does one
// step; `send_response` calls it until the socket is full (EAGAIN), the range is sent, or
// TURN_BYTES went out this turn (then the other connections get theirs).
// ---------------------------------------------------------------------------------------------

/// A connection's body is sent in calls of at most this many bytes, and once this many (or a
/// little more) went out in one turn of the loop, the next ready connection gets its turn
/// (nginx's `sendfile_max_chunk` is 2m as well). Linux caps one `sendfile` at 0x7ffff000
/// bytes; at 2 MiB a call never comes near it.
const TURN_BYTES: usize = 2 << 20;

/// `--mode sendfile`: one syscall, no buffer. The kernel takes the pages from the page cache
/// and queues them on the socket; `offset` is ours and 64-bit, so files past 4 GiB work.
fn send_body_sendfile(socket: BorrowedFd, body: &mut FileRange) -> io::Result<Moved> {
    let count = (body.end - body.pos).min(TURN_BYTES as u64) as usize;
    let mut offset = body.pos as libc::off64_t;
    match nix::sys::sendfile::sendfile64(socket, &body.file, Some(&mut offset), count) {
        // 0 before the end: the file was truncated under us. The socket is still writable, so
        // waiting for EPOLLOUT and trying again would spin; the caller closes the connection.
        Ok(0) => Ok(Moved::FileEnded),
        Ok(n) => {
            body.pos = offset as u64;
            Ok(Moved::Bytes(n))
        }
        Err(Errno::EAGAIN | Errno::EINTR) => Ok(Moved::WouldBlock),
        Err(e) => Err(e.into()),
    }
}

/// `--mode copy`: `pread` the file into our buffer (copy 1: page cache to user space), then
/// `write` the buffer to the socket (copy 2: user space to the socket buffer). What the socket
/// did not take stays in the buffer for the next EPOLLOUT.
fn send_body_copy(
    socket: BorrowedFd,
    body: &mut FileRange,
    buffer: &mut CopyBuffer,
) -> io::Result<Moved> {
    if buffer.pending().is_empty() {
        let want = (body.end - body.pos).min(buffer.data.len() as u64) as usize;
        let n = match body.file.read_at(&mut buffer.data[..want], body.pos) {
            Ok(0) => return Ok(Moved::FileEnded), // truncated under us, as above
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Moved::WouldBlock),
            Err(e) => return Err(e),
        };
        body.pos += n as u64;
        buffer.fill(n);
    }
    match nix::unistd::write(socket, buffer.pending()) {
        Ok(n) => {
            buffer.consume(n);
            Ok(Moved::Bytes(n))
        }
        Err(Errno::EAGAIN | Errno::EINTR) => Ok(Moved::WouldBlock),
        Err(e) => Err(e.into()),
    }
}

/// The user-space buffer of `--mode copy`: `data[start..end]` is read but not yet written.
struct CopyBuffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl CopyBuffer {
    fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
    fn fill(&mut self, n: usize) {
        (self.start, self.end) = (0, n);
    }
    fn consume(&mut self, n: usize) {
        self.start += n;
    }
}

enum Sent {
    Done,
    Blocked,
    Truncated,
}

/// Sends the head, then the body in the chosen mode, until done or EAGAIN.
fn send_response(ctx: &Ctx, stats: &FileStats, conn: &mut Conn) -> io::Result<Sent> {
    let Connection {
        stream,
        response,
        last_progress,
        ..
    } = &mut conn.http;
    let Some(response) = response.as_mut() else {
        return Ok(Sent::Done);
    };
    let socket = stream.as_fd();
    // The head (a plain send: with MSG_MORE the sendfile behind it cost 1.7x the CPU, see
    // netlab_http::transfer), then the pieces of a listing as `refill` makes them.
    loop {
        while response.head_sent < response.head.len() {
            match send_bytes(socket, &response.head[response.head_sent..])? {
                Moved::Bytes(n) => response.head_sent += n,
                _ => return Ok(Sent::Blocked),
            }
            *last_progress = Instant::now();
        }
        if !response.refill() {
            break;
        }
    }
    let Some(body) = response.body.as_mut() else {
        return Ok(Sent::Done);
    };
    let mut buffer = match ctx.mode {
        Mode::Sendfile => None,
        Mode::Copy => Some(conn.copy.get_or_insert_with(|| CopyBuffer {
            data: vec![0; ctx.copy_buffer],
            start: 0,
            end: 0,
        })),
    };
    let mut this_turn = 0usize;
    loop {
        if this_turn >= TURN_BYTES {
            return Ok(Sent::Blocked);
        }
        let drained = buffer.as_ref().is_none_or(|b| b.pending().is_empty());
        if body.pos == body.end && drained {
            return Ok(Sent::Done);
        }
        let step = match buffer.as_deref_mut() {
            None => send_body_sendfile(socket, body)?,
            Some(buffer) => send_body_copy(socket, body, buffer)?,
        };
        match step {
            Moved::Bytes(n) => {
                this_turn += n;
                Stats::add(&stats.bytes, n as u64);
                *last_progress = Instant::now();
            }
            Moved::WouldBlock => return Ok(Sent::Blocked),
            Moved::FileEnded => return Ok(Sent::Truncated),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timeouts: a slow client must not hold a connection (and its fd and file) for ever.
// ---------------------------------------------------------------------------------------------

/// How long `epoll_wait` may sleep: until the next sweep if any connection is open, else as
/// the accept pause says (-1: until something happens).
fn wait_timeout(
    pause: &AcceptPause,
    conns: &HashMap<RawFd, Conn>,
    next_sweep: Instant,
) -> EpollTimeout {
    let mut ms = pause.wait_timeout_ms();
    if !conns.is_empty() {
        let sweep = next_sweep
            .saturating_duration_since(Instant::now())
            .as_millis() as i32
            + 1;
        ms = if ms < 0 { sweep } else { ms.min(sweep) };
    }
    EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE)
}

/// Closes connections past a deadline (netlab_http::Connection::expired). A head that never
/// completes gets a 408 first (best effort: one non-blocking send). A lingering connection was
/// answered, so its end is no timeout.
fn close_expired(
    stats: &FileStats,
    conns: &mut HashMap<RawFd, Conn>,
    pause: &mut AcceptPause,
    timeouts: &Timeouts,
) {
    let now = Instant::now();
    let expired: Vec<(RawFd, Expired)> = conns
        .iter()
        .filter_map(|(&fd, c)| Some((fd, c.http.expired(now, timeouts)?)))
        .collect();
    for (fd, why) in expired {
        if why == Expired::Header {
            let conn = &conns[&fd];
            let _ = send_bytes(
                conn.http.stream.as_fd(),
                &error_response(408, &[], true, false),
            );
        }
        if why != Expired::Lingering {
            Stats::add(&stats.timeouts, 1);
        }
        close(conns, pause, fd);
    }
}

impl Summary for FileStats {
    fn line(&self) -> String {
        let get = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        format!(
            "connections={} requests={} bytes={} errors={} timeouts={} truncated={}",
            get(&self.connections),
            get(&self.requests),
            get(&self.bytes),
            get(&self.errors),
            get(&self.timeouts),
            get(&self.truncated)
        )
    }
}

/// The first things to try, printed at start before the strace and kill lines every server
/// prints.
fn try_lines(target: &str, pid: u32, served: &str, fd_limit: u64) -> Vec<String> {
    vec![
        format!("curl -v http://{target}/                      the listing of {served} (or its index.html)"),
        format!("curl -s -o /dev/null -r 0-99 -w '%{{http_code}}\\n' http://{target}/FILE   a range: 206"),
        format!("cargo run --release --bin loadgen -- http http://{target}/FILE -c 8 -d 10s --server-pid {pid}"),
        format!("(open files limit raised to {fd_limit}: about that many connections at once)"),
    ]
}
