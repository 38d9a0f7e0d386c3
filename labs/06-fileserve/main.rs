//! # Lab 06: a file server, `sendfile(2)` beside `read(2)` + `write(2)`
//!
//! ```text
//! cargo run --release --bin fileserve -- --root . --mode sendfile      # or --mode copy
//! curl -v http://127.0.0.1:8080/Cargo.toml
//! strace -f -e trace=openat2,sendfile,pread64,write,sendto,epoll_wait,epoll_ctl -p PID
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
//! Everything else is the same in both modes, and small: `openat2(..., RESOLVE_BENEATH)` opens
//! the file so that no path a client sends can leave `--root` (see netlab_http::resolve), the
//! HTTP parsing is in netlab_http, and the loop is epoll, **level-triggered**, as in lab 04: a
//! connection is registered for EPOLLIN while it waits for a request and for EPOLLOUT while it
//! sends one; pipelined requests wait in its input buffer and are answered in order.
//!
//! Lessons on the side: delete a file while it downloads and the download completes (the open
//! fd keeps the inode; `ls -l /proc/PID/fd` shows it `(deleted)`); truncate it and `sendfile`
//! returns 0 before the end, so the connection is closed (waiting for EPOLLOUT again would
//! spin: the socket stays writable).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use netlab_core::{
    exit_on_error, is_fd_exhausted, parse_args, parse_duration, parse_size, AcceptPause, Listener,
    Signals, Stream,
};
use netlab_http::request::MAX_HEAD;
use netlab_http::response::{error_response, http_date, not_modified_since};
use netlab_http::transfer::{send_bytes, Moved};
use netlab_http::{
    content_type, evaluate_range, parse_head, parse_target, Opened, Parsed, RangeDecision, Request,
    ResponseHead, Root,
};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::stat::FileStat;

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
    #[arg(long, default_value_t = 16384)]
    backlog: i32,

    /// --mode copy: the user-space buffer each connection reads into and writes from.
    #[arg(long, value_name = "BYTES", default_value = "64KiB", value_parser = parse_size)]
    copy_buffer: usize,

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

fn main() {
    let cli: Cli = parse_args();
    exit_on_error("fileserve", run(cli));
}

/// epoll hands back the 64-bit `data` we registered: the fd for connections, these for the rest.
const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;

/// One connection: the socket, the bytes of requests not answered yet, the response being sent.
struct Conn {
    stream: Stream,
    /// Request bytes read but not yet parsed: a partial head, or pipelined requests.
    input: Vec<u8>,
    response: Option<Response>,
    /// --mode copy only: the user-space buffer (allocated on the first body).
    copy: Option<CopyBuffer>,
    registered: EpollFlags,
    /// The client shut down its sending side (read returned 0).
    peer_closed: bool,
    /// Since when this connection has waited for a request (keep-alive idle timeout).
    idle_since: Instant,
    /// When the first byte of the current, incomplete head arrived (header timeout).
    head_started: Option<Instant>,
    /// When the last response byte went out (send timeout).
    last_progress: Instant,
}

/// A response: its head (with the whole body when it is short: errors, listings), then maybe a
/// range of a file.
struct Response {
    head: Vec<u8>,
    head_sent: usize,
    body: Option<Body>,
    keep_alive: bool,
}

/// The part of a file still to send: `pos..end`.
struct Body {
    file: File,
    pos: u64,
    end: u64,
}

/// How the loop's helpers see the server.
struct Ctx {
    mode: Mode,
    root: Root,
    copy_buffer: usize,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    connections: u64,
    requests: u64,
    bytes: u64,
    errors: u64,
    timeouts: u64,
    truncated: u64,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let root = Root::new(&cli.root)
        .with_context(|| format!("cannot serve --root {}", cli.root.display()))?;
    let listener = Listener::bind_tcp(cli.addr, cli.backlog).with_context(|| {
        format!(
            "cannot listen on {} (try another --addr, or port 0 for any free port)",
            cli.addr
        )
    })?;
    listener.set_nonblocking(true)?;
    let signals = Signals::install().context("cannot install signal handlers")?;
    let model = match cli.mode {
        Mode::Sendfile => "fileserve-sendfile",
        Mode::Copy => "fileserve-copy",
    };
    announce(&listener, model, &root);

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
    epoll.add(
        signals.wake_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS),
    )?;

    let mut ctx = Ctx {
        mode: cli.mode,
        root,
        copy_buffer: cli.copy_buffer,
        stats: Stats::default(),
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
            epoll.modify(&listener, &mut EpollEvent::new(flags, LISTENER))?;
        }
        let timeout = wait_timeout(&pause, &conns, next_sweep);
        let ready = match epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue, // a signal arrived; epoll_wait is never restarted
            Err(e) => return Err(e.into()),
        };
        for event in &events[..ready] {
            match event.data() {
                LISTENER => accept_all(&listener, &epoll, &mut conns, &mut pause, &mut ctx)?,
                SIGNALS => {
                    signals.drain();
                    if signals.take_report() {
                        eprintln!("fileserve: {}", ctx.stats.line());
                    }
                    if signals.stop_requested() {
                        break 'serve;
                    }
                }
                fd => on_event(
                    &mut ctx,
                    &epoll,
                    &mut conns,
                    &mut pause,
                    fd as RawFd,
                    event.events(),
                )?,
            }
        }
        if Instant::now() >= next_sweep {
            close_expired(&mut ctx, &mut conns, &mut pause, &timeouts);
            next_sweep = Instant::now() + timeouts.sweep_every();
        }
    }
    drop(conns); // close(2) every connection and every open file
    println!("stopped model={model} {}", ctx.stats.line());
    Ok(())
}

/// Accepts every waiting connection and registers it for reading its first request.
fn accept_all(
    listener: &Listener,
    epoll: &Epoll,
    conns: &mut HashMap<RawFd, Conn>,
    pause: &mut AcceptPause,
    ctx: &mut Ctx,
) -> anyhow::Result<()> {
    loop {
        match listener.accept_nonblocking() {
            Ok(stream) => {
                let fd = stream.as_raw_fd();
                // A short last segment (a 304, the end of a file) must not wait for the ACK of
                // the one before it (Nagle): on keep-alive that costs a delayed ACK, ~40 ms.
                let _ = nix::sys::socket::setsockopt(
                    &stream,
                    nix::sys::socket::sockopt::TcpNoDelay,
                    &true,
                );
                epoll.add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, fd as u64))?;
                let now = Instant::now();
                conns.insert(
                    fd,
                    Conn {
                        stream,
                        input: Vec::new(),
                        response: None,
                        copy: None,
                        registered: EpollFlags::EPOLLIN,
                        peer_closed: false,
                        idle_since: now,
                        head_started: None,
                        last_progress: now,
                    },
                );
                ctx.stats.connections += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if is_fd_exhausted(&e) => {
                pause.pause("fileserve", &e);
                return Ok(());
            }
            Err(e) => eprintln!("fileserve: accept4: {e}"),
        }
    }
}

/// One ready connection: read a request if it waits for one, send what is due, and register
/// for whichever it needs next.
fn on_event(
    ctx: &mut Ctx,
    epoll: &Epoll,
    conns: &mut HashMap<RawFd, Conn>,
    pause: &mut AcceptPause,
    fd: RawFd,
    flags: EpollFlags,
) -> anyhow::Result<()> {
    let Some(conn) = conns.get_mut(&fd) else {
        return Ok(());
    };
    // EPOLLHUP and EPOLLERR come whether asked for or not; the next read or send reports them.
    let readable =
        flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
    match serve(ctx, conn, readable) {
        Ok(true) => {
            let want = interest(conn);
            if want != conn.registered {
                epoll.modify(&conn.stream, &mut EpollEvent::new(want, fd as u64))?;
                conn.registered = want;
            }
            return Ok(());
        }
        Ok(false) => {}
        Err(_) => ctx.stats.errors += 1, // ECONNRESET, EPIPE: only this connection ends
    }
    conns.remove(&fd); // close(2): also leaves the epoll interest list, and closes the file
    pause.resume();
    Ok(())
}

/// Reads (once: level-triggered), then answers complete requests in the order they came until
/// the socket is full or no complete request is left. Returns false when the connection is done.
fn serve(ctx: &mut Ctx, conn: &mut Conn, readable: bool) -> io::Result<bool> {
    if conn.response.is_none() && readable {
        read_requests(conn)?;
    }
    loop {
        if conn.response.is_none() {
            let response = match parse_head(&conn.input) {
                Parsed::Incomplete => return Ok(!conn.peer_closed),
                Parsed::Complete(request, used) => {
                    conn.input.drain(..used);
                    ctx.stats.requests += 1;
                    respond(ctx, &request)
                }
                // A bad head: say why, and close (we cannot tell where the next request starts).
                Parsed::Error(status) => {
                    conn.input.clear();
                    short_response(status, &[], true, false)
                }
            };
            conn.head_started = (!conn.input.is_empty()).then(Instant::now);
            conn.response = Some(response);
        }
        match send_response(ctx, conn)? {
            Sent::Blocked => return Ok(true),
            Sent::Truncated => {
                ctx.stats.truncated += 1;
                return Ok(false);
            }
            Sent::Done => {
                let keep_alive = conn.response.take().is_some_and(|r| r.keep_alive);
                if !keep_alive {
                    return Ok(false);
                }
                conn.idle_since = Instant::now();
            }
        }
    }
}

/// The intent, in epoll's vocabulary: a response in flight waits for room in the socket
/// buffer; otherwise wait for the next request's bytes.
fn interest(conn: &Conn) -> EpollFlags {
    if conn.response.is_some() {
        EpollFlags::EPOLLOUT
    } else {
        EpollFlags::EPOLLIN
    }
}

/// One `recvfrom` into the connection's input buffer, which never grows past the head limit.
fn read_requests(conn: &mut Conn) -> io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    let room = (MAX_HEAD + 1024)
        .saturating_sub(conn.input.len())
        .min(chunk.len());
    if room == 0 {
        return Ok(()); // parse_head will say 431
    }
    match (&conn.stream).read(&mut chunk[..room]) {
        Ok(0) => conn.peer_closed = true,
        Ok(n) => {
            if conn.input.is_empty() {
                conn.head_started = Some(Instant::now());
            }
            conn.input.extend_from_slice(&chunk[..n]);
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The lesson: two ways to move `body.pos..body.end` of a file into a socket. Each does one
// step; `send_response` calls it until the socket is full (EAGAIN), the range is sent, or
// TURN_BYTES went out this turn (then the other connections get theirs).
// ---------------------------------------------------------------------------------------------

/// A connection's body is sent in calls of at most this many bytes, and once this many (or a
/// little more) went out in one turn of the loop, the next ready connection gets its turn
/// (nginx's `sendfile_max_chunk` is 2m as well). Linux caps one `sendfile` at 0x7ffff000 bytes
/// (`netlab_http::transfer::SENDFILE_MAX`); at 2 MiB a call never comes near it.
const TURN_BYTES: usize = 2 << 20;

/// `--mode sendfile`: one syscall, no buffer. The kernel takes the pages from the page cache
/// and queues them on the socket; `offset` is ours and 64-bit, so files past 4 GiB work.
fn send_body_sendfile(socket: BorrowedFd, body: &mut Body) -> io::Result<Moved> {
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
    body: &mut Body,
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
fn send_response(ctx: &mut Ctx, conn: &mut Conn) -> io::Result<Sent> {
    let Conn {
        stream,
        response,
        copy,
        last_progress,
        ..
    } = conn;
    let Some(response) = response.as_mut() else {
        return Ok(Sent::Done);
    };
    let socket = stream.as_fd();
    while response.head_sent < response.head.len() {
        // A plain send: with MSG_MORE the sendfile behind it cost 1.7x the CPU (see
        // netlab_http::transfer).
        match send_bytes(socket, &response.head[response.head_sent..])? {
            Moved::Bytes(n) => response.head_sent += n,
            _ => return Ok(Sent::Blocked),
        }
        *last_progress = Instant::now();
    }
    let Some(body) = response.body.as_mut() else {
        return Ok(Sent::Done);
    };
    let buffer = match ctx.mode {
        Mode::Sendfile => None,
        Mode::Copy => Some(copy.get_or_insert_with(|| CopyBuffer {
            data: vec![0; ctx.copy_buffer.max(1)],
            start: 0,
            end: 0,
        })),
    };
    let mut buffer = buffer;
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
                ctx.stats.bytes += n as u64;
                *last_progress = Instant::now();
            }
            Moved::WouldBlock => return Ok(Sent::Blocked),
            Moved::FileEnded => return Ok(Sent::Truncated),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP: what to answer. No I/O on the socket here; only opens and stats of files.
// ---------------------------------------------------------------------------------------------

/// Builds the response to one request.
fn respond(ctx: &Ctx, request: &Request) -> Response {
    // This server reads no request bodies: answer, then close, so a body is never taken for
    // the next request.
    let keep_alive = request.keep_alive() && !request.has_body();
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return short_response(405, &[("Allow", "GET, HEAD".into())], true, keep_alive);
    }
    let Ok(target) = parse_target(&request.target) else {
        return short_response(400, &[], !head_only, false);
    };
    let relative = target.relative_path();
    match ctx.root.open(&relative) {
        // `/file.txt/` asks for a directory: a file is not one.
        Ok(Opened::File(..)) if target.trailing_slash => {
            short_response(404, &[], !head_only, keep_alive)
        }
        Ok(Opened::File(file, stat)) => {
            file_response(request, &relative, file, &stat, head_only, keep_alive)
        }
        Ok(Opened::Dir) if !target.trailing_slash => {
            // `/sub` names a directory: send the client to `/sub/`, or relative links in the
            // listing or index.html would resolve against the parent.
            let location = target.directory_location();
            short_response(301, &[("Location", location)], !head_only, keep_alive)
        }
        Ok(Opened::Dir) => {
            let index = relative.join("index.html");
            match ctx.root.open(&index) {
                Ok(Opened::File(file, stat)) => {
                    file_response(request, &index, file, &stat, head_only, keep_alive)
                }
                _ => listing_response(
                    ctx,
                    &relative,
                    &target.display_path(),
                    head_only,
                    keep_alive,
                ),
            }
        }
        Err(refusal) => short_response(refusal.status(), &[], !head_only, keep_alive),
    }
}

/// 200 with the whole file, 206 with one range, 304 if unchanged, or 416.
fn file_response(
    request: &Request,
    path: &Path,
    file: File,
    stat: &FileStat,
    head_only: bool,
    keep_alive: bool,
) -> Response {
    let len = stat.st_size as u64;
    let last_modified = http_date(stat.st_mtime);
    if not_modified_since(request.header("if-modified-since"), stat.st_mtime) {
        let head = ResponseHead::new(304)
            .header("Last-Modified", &last_modified)
            .finish(keep_alive);
        return Response::new(head, None, keep_alive);
    }
    // If-Range: the range holds only if the client's copy is this version of the file.
    let range = match request.header("if-range") {
        Some(date) if date != last_modified => RangeDecision::Full,
        _ => evaluate_range(request.header("range"), len),
    };
    let (status, start, end) = match range {
        RangeDecision::Full => (200, 0, len),
        RangeDecision::Partial { start, end } => (206, start, end + 1),
        RangeDecision::Unsatisfiable => {
            let range = ("Content-Range", format!("bytes */{len}"));
            return short_response(416, &[range], !head_only, keep_alive);
        }
    };
    let mut head = ResponseHead::new(status)
        .header("Content-Type", content_type(path))
        .header("Content-Length", end - start)
        .header("Last-Modified", &last_modified)
        .header("Accept-Ranges", "bytes");
    if status == 206 {
        head = head.header("Content-Range", format!("bytes {start}-{}/{len}", end - 1));
    }
    let body = (!head_only && end > start).then_some(Body {
        file,
        pos: start,
        end,
    });
    Response::new(head.finish(keep_alive), body, keep_alive)
}

/// 200 with a plain HTML list of the directory's entries.
fn listing_response(
    ctx: &Ctx,
    relative: &Path,
    display_path: &str,
    head_only: bool,
    keep_alive: bool,
) -> Response {
    let html = match ctx.root.open_dir(relative) {
        Ok(dir) => match netlab_http::listing::render(dir, display_path) {
            Ok(html) => html,
            Err(_) => return short_response(403, &[], !head_only, keep_alive),
        },
        Err(refusal) => return short_response(refusal.status(), &[], !head_only, keep_alive),
    };
    let mut head = ResponseHead::new(200)
        .header("Content-Type", "text/html; charset=utf-8")
        .header("Content-Length", html.len())
        .finish(keep_alive);
    if !head_only {
        head.extend_from_slice(html.as_bytes());
    }
    Response::new(head, None, keep_alive)
}

/// An error or redirect: the head and a one-line body, all in one buffer.
fn short_response(
    status: u16,
    extra: &[(&str, String)],
    with_body: bool,
    keep_alive: bool,
) -> Response {
    // After a client error in the request itself (400, 414, 431, 505) we cannot trust where the
    // next request would start: close.
    let keep_alive = keep_alive && !matches!(status, 400 | 408 | 414 | 431 | 505);
    Response::new(
        error_response(status, extra, with_body, keep_alive),
        None,
        keep_alive,
    )
}

impl Response {
    fn new(head: Vec<u8>, body: Option<Body>, keep_alive: bool) -> Response {
        Response {
            head,
            head_sent: 0,
            body,
            keep_alive,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timeouts: a slow client must not hold a connection (and its fd and file) for ever.
// ---------------------------------------------------------------------------------------------

struct Timeouts {
    header: Duration,
    send: Duration,
    idle: Duration,
}

impl Timeouts {
    /// Connections are checked this often: a quarter of the shortest timeout, 50 ms to 1 s.
    fn sweep_every(&self) -> Duration {
        (self.header.min(self.send).min(self.idle) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

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

/// Closes connections past a deadline. A head that never completes gets a 408 first (best
/// effort: one non-blocking send); the others are simply closed.
fn close_expired(
    ctx: &mut Ctx,
    conns: &mut HashMap<RawFd, Conn>,
    pause: &mut AcceptPause,
    timeouts: &Timeouts,
) {
    let now = Instant::now();
    let expired: Vec<RawFd> = conns
        .iter()
        .filter(|(_, c)| match (&c.response, c.head_started) {
            (Some(_), _) => now - c.last_progress > timeouts.send,
            (None, Some(started)) => now - started > timeouts.header,
            (None, None) => now - c.idle_since > timeouts.idle,
        })
        .map(|(&fd, _)| fd)
        .collect();
    for fd in expired {
        if let Some(conn) = conns.remove(&fd) {
            if conn.response.is_none() && conn.head_started.is_some() {
                let _ = send_bytes(conn.stream.as_fd(), &error_response(408, &[], true, false));
            }
            ctx.stats.timeouts += 1;
            pause.resume();
        }
    }
}

impl Stats {
    fn line(&self) -> String {
        format!(
            "connections={} requests={} bytes={} errors={} timeouts={} truncated={}",
            self.connections, self.requests, self.bytes, self.errors, self.timeouts, self.truncated
        )
    }
}

/// The "listening" line on stdout (scripts parse it), then things to try on stderr.
fn announce(listener: &Listener, model: &str, root: &Root) {
    let pid = std::process::id();
    let addr = listener.address();
    println!("listening on {addr} pid={pid} model={model}");
    let _ = io::Write::flush(&mut io::stdout());
    eprintln!(
        "fileserve: pid {pid}, serving {} on http://{addr}/. Try:",
        root.path.display()
    );
    eprintln!("  curl -v http://{addr}/                      the listing (or index.html)");
    eprintln!(
        "  curl -s -o /dev/null -r 0-99 -w '%{{http_code}}\\n' http://{addr}/FILE   a range: 206"
    );
    eprintln!("  strace -f -e trace=openat2,sendfile,pread64,write,sendto,epoll_wait -p {pid}");
    eprintln!("  kill -USR1 {pid}   print the counters;   Ctrl-C or kill {pid}   stop");
}
