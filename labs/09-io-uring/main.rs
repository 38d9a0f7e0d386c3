//! # Lab 09: an echo server on `io_uring`
//!
//! ```text
//! cargo build --release --bin echo-uring
//! strace -f -tt -e trace=io_uring_setup,io_uring_register,io_uring_enter,close ./target/release/echo-uring
//! ```
//!
//! What to look for: no `accept4`, no `recvfrom`, no `sendto` on a client socket (only on the
//! signal pipe, which is read the ordinary way). Every other lab asks the kernel "which sockets
//! are ready?" and then does the I/O itself (readiness). Here the server hands the kernel the
//! I/O to do through a ring of submissions in shared memory, and collects the results from a
//! ring of completions (completion). One `io_uring_enter` submits a whole batch and waits:
//!
//! ```text
//! io_uring_enter(3, 2, 1, IORING_ENTER_GETEVENTS, NULL, 8) = 2
//! ```
//!
//! reads "2 submitted, wait for at least 1 completion". Four things keep the batches small:
//!
//! - **Multishot accept**: one submission accepts every connection that comes, each as its own
//!   completion, until it fails (EMFILE) or is cancelled.
//! - **Multishot receive into a shared pool**: one submission per connection receives every
//!   chunk that arrives, into a buffer the kernel picks from one pool (a *provided buffer ring*)
//!   only when data is there. A connection with nothing to read holds no buffer; each chunk is
//!   copied out and its buffer goes straight back.
//! - **One send in flight per connection**, from the connection's own copy of what it received:
//!   sends happen in order, and a slow reader holds its own bytes, never the pool's buffers.
//! - **`--max-pending`**: a connection whose unsent bytes reach it has its receive cancelled, and
//!   asks again once the sends drain below it.
//!
//! Each connection also has a watch for its hang-up (a one-shot poll for POLLRDHUP): once the
//! peer has shut down, what is left is read with single receives, because a multishot receive
//! over a Unix socket can miss the end of file (`on_hung_up` says how).
//!
//! `--sqpoll` adds a kernel thread that picks up submissions without any syscall.
//!
//! Compare with a readiness server: `diff labs/04-epoll-lt/main.rs labs/09-io-uring/main.rs`.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use clap::Parser;
use netlab_core::uring::{Completion, OpId, Ring, Submission};
use netlab_core::{
    exit_on_error, is_fd_exhausted, parse_args, AcceptPause, Model, Server, ServerArgs, Stats,
    Stream,
};
use nix::sys::resource::{getrlimit, Resource};

/// Echo server on io_uring: submit the I/O, collect completions.
#[derive(Parser)]
#[command(name = "echo-uring", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// Let a kernel thread poll the submission ring (IORING_SETUP_SQPOLL), so submitting costs
    /// no syscall. The thread (iou-sqp-PID) is one of this process's threads and its CPU counts
    /// as the server's; it spins while there is work and sleeps after `SQPOLL_IDLE` without.
    #[arg(long)]
    sqpoll: bool,
}

fn main() {
    let cli: Cli = parse_args();
    exit_on_error("echo-uring", run(cli));
}

/// Submissions the ring holds before `io_uring_enter` must take them (more are queued by
/// submitting early).
const RING_ENTRIES: u32 = 1024;
/// The receive pool every connection shares: `POOL_BUFFERS` buffers of `POOL_BUFFER` bytes.
/// Buffers go back as soon as a batch is reaped, so the pool must cover only the chunks of one
/// batch; when it runs dry (ENOBUFS), the receives it ended are asked again for the next.
const POOL_BUFFERS: u16 = 1024;
const POOL_BUFFER: u32 = 1024;
/// How long `--sqpoll`'s kernel thread spins without work before it sleeps. Short: a spinning
/// thread burns a core, and an EMFILE pause that retries every 100 ms must not keep it awake.
const SQPOLL_IDLE: Duration = Duration::from_millis(10);
/// Slots in the registered file table (fds above it use the plain fd).
const FILE_SLOTS: u64 = 65536;

/// One connection, indexed by its fd.
struct Conn {
    #[allow(dead_code)] // owned, never read: dropping the connection is close(2)
    stream: Stream,
    /// The receive, while the kernel holds one: multishot until the peer hangs up.
    recv: InKernel,
    /// The poll for POLLRDHUP that says the peer has hung up (see `on_hung_up`).
    hang_up_watch: InKernel,
    /// The watch fired: from now on, single receives only.
    peer_hung_up: bool,
    /// Bytes received and not yet handed to a send.
    queued: Vec<u8>,
    /// Bytes of the send in flight still to go (0: none in flight).
    sending: usize,
    /// The client finished sending: close once everything is echoed.
    peer_finished: bool,
    /// An error ended it: close once the kernel holds nothing of it.
    failed: bool,
}

/// Where an operation on a connection stands.
#[derive(Clone, Copy, PartialEq)]
enum InKernel {
    Off,
    Armed(OpId),
    /// Cancelled; its last completion is still to come.
    Stopping,
}

impl Conn {
    fn unsent(&self) -> usize {
        self.queued.len() + self.sending
    }
}

/// The loop's state besides the ring: the connections and the accept.
struct Echo<'a> {
    server: &'a Server,
    /// Indexed by fd: `conns[11]` is the connection strace shows as fd 11.
    conns: Vec<Option<Conn>>,
    /// A multishot accept is armed in the kernel.
    accepting: bool,
    /// After EMFILE: no new accept until a connection closes or the backoff has passed.
    pause: AcceptPause,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let model = Model {
        name: "uring",
        trace: "io_uring_enter,close",
    };
    let server = Server::start(model, &cli.server)?;
    let signals_fd = server.signals.wake_fd().as_raw_fd();
    let submission = if cli.sqpoll {
        Submission::SqPoll { idle: SQPOLL_IDLE }
    } else {
        Submission::Enter
    };

    let mut ring = Ring::new(RING_ENTRIES, submission)?;
    ring.provide_buffers(POOL_BUFFERS, POOL_BUFFER)?;
    // A slot per possible fd, so that a connection's slot is its fd number: as many as
    // RLIMIT_NOFILE allows (the kernel's own cap on the table), up to FILE_SLOTS.
    let (open_files, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    ring.register_file_table(open_files.min(FILE_SLOTS) as u32)?;
    ring.poll_readable(signals_fd)?;
    let mut echo = Echo {
        server: &server,
        conns: Vec::new(),
        accepting: false,
        pause: AcceptPause::default(),
    };
    let mut stopping = false;

    while !stopping {
        if !echo.accepting && !echo.pause.is_paused() {
            ring.accept_multi(&server.listener)?; // again, after EMFILE or any other end
            echo.accepting = true;
        }
        let completions = match ring.submit_and_wait() {
            Ok(completions) => completions,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue, // EINTR: a signal
            Err(e) => return Err(e.into()),
        };
        for completion in completions {
            match completion {
                Completion::Accepted { result, more } => {
                    echo.accepting = more;
                    match result {
                        Ok(fd) => echo.add(&mut ring, server.listener.stream_from(fd))?,
                        // The connection stays queued; asking again at once would spin.
                        Err(e) if is_fd_exhausted(&e) => {
                            echo.pause.pause("echo-uring", &e);
                            ring.timeout(AcceptPause::BACKOFF)?; // wakes the loop to try again
                        }
                        Err(e) => eprintln!("echo-uring: accept: {e}"),
                    }
                }
                Completion::TimedOut => {} // the accept pause may be over: checked at the top
                Completion::Readable { .. } => {
                    // Stop after this batch: the rest of it may hold finished sends to count.
                    stopping = server.on_signal();
                    if !stopping {
                        ring.poll_readable(signals_fd)?; // one-shot: ask again
                    }
                }
                Completion::Received { fd, result, more } => {
                    echo.on_received(&mut ring, fd, result, more)?
                }
                Completion::HungUp { fd } => echo.on_hung_up(&mut ring, fd)?,
                Completion::Sent {
                    fd,
                    buf,
                    start,
                    end,
                    result,
                } => echo.on_sent(&mut ring, fd, buf, start..end, result)?,
            }
        }
    }
    // Cancel what is in flight and wait until the kernel lets go of every buffer; a send that
    // finished meanwhile did reach its client, so it counts. Then close(2) every connection.
    for completion in ring.cancel_all() {
        if let Completion::Sent {
            result: Ok(sent), ..
        } = completion
        {
            Stats::add(&server.stats.bytes, sent as u64);
        }
    }
    drop(echo);
    server.finish();
    Ok(())
}

impl Echo<'_> {
    /// A new connection: its multishot receive, and the watch for its hang-up.
    fn add(&mut self, ring: &mut Ring, stream: Stream) -> anyhow::Result<()> {
        let fd = stream.as_raw_fd();
        if let Err(e) = ring.register_file(fd) {
            eprintln!("echo-uring: register fd {fd}: {e}; using it unregistered");
        }
        let slot = usize::try_from(fd)?;
        if self.conns.len() <= slot {
            self.conns.resize_with(slot + 1, || None);
        }
        self.conns[slot] = Some(Conn {
            stream,
            recv: InKernel::Off,
            hang_up_watch: InKernel::Armed(ring.watch_hang_up(fd)?),
            peer_hung_up: false,
            queued: Vec::new(),
            sending: 0,
            peer_finished: false,
            failed: false,
        });
        Stats::add(&self.server.stats.connections, 1);
        self.update(ring, fd)
    }

    /// A chunk arrived (or the receive ended): queue it for sending.
    fn on_received(
        &mut self,
        ring: &mut Ring,
        fd: RawFd,
        result: std::io::Result<Vec<u8>>,
        more: bool,
    ) -> anyhow::Result<()> {
        let stats = &self.server.stats;
        let conn = conns_get(&mut self.conns, fd);
        if !more {
            conn.recv = InKernel::Off;
        }
        match result {
            Ok(bytes) if bytes.is_empty() => conn.peer_finished = true, // end of file
            Ok(bytes) if conn.queued.is_empty() => conn.queued = bytes,
            Ok(bytes) => conn.queued.extend_from_slice(&bytes),
            // The pool ran dry during the batch; every buffer is back by now, so `update` asks
            // again. ECANCELED: we stopped it (--max-pending).
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::ECANCELED)) => {}
            Err(_) => {
                Stats::add(&stats.errors, 1); // ECONNRESET: only this one ends
                conn.failed = true;
            }
        }
        self.update(ring, fd)
    }

    /// The peer shut down its sending side (or the connection failed, or we cancelled the
    /// watch to close). Kernel fact, seen on Linux 6.18: over a Unix socket, a multishot
    /// receive now and then misses the end of file. It delivers the last bytes and then waits,
    /// armed, for a wake-up that never comes, though a plain recv(2) on the socket returns 0
    /// (about one 6 MiB half-close in 100; never over TCP in 300). A single receive cannot
    /// miss it: with the peer gone, the kernel answers it at once, with bytes or with 0. So the
    /// multishot receive is cancelled here, and what is left is read one receive at a time.
    fn on_hung_up(&mut self, ring: &mut Ring, fd: RawFd) -> anyhow::Result<()> {
        let conn = conns_get(&mut self.conns, fd);
        conn.hang_up_watch = InKernel::Off;
        conn.peer_hung_up = true;
        if let InKernel::Armed(op) = conn.recv {
            ring.cancel(op)?;
            conn.recv = InKernel::Stopping;
        }
        self.update(ring, fd)
    }

    /// A send finished: send the rest if it was partial, else what queued up meanwhile.
    fn on_sent(
        &mut self,
        ring: &mut Ring,
        fd: RawFd,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
        result: std::io::Result<usize>,
    ) -> anyhow::Result<()> {
        let stats = &self.server.stats;
        let conn = conns_get(&mut self.conns, fd);
        conn.sending = 0;
        match result {
            Ok(sent) => {
                Stats::add(&stats.bytes, sent as u64);
                if range.start + sent < range.end {
                    conn.sending = range.end - range.start - sent;
                    ring.send(fd, buf, range.start + sent, range.end)?;
                }
            }
            Err(_) => {
                Stats::add(&stats.errors, 1); // EPIPE, ECONNRESET
                conn.failed = true;
            }
        }
        self.update(ring, fd)
    }

    /// Brings what the kernel holds for `fd` in line with what the connection wants: a send of
    /// what is queued, a receive while unsent bytes stay below --max-pending (multishot while
    /// the peer is there, single once it hung up), and close(2) once it is finished and the
    /// kernel holds nothing of it.
    fn update(&mut self, ring: &mut Ring, fd: RawFd) -> anyhow::Result<()> {
        let max_pending = self.server.max_pending;
        let conn = conns_get(&mut self.conns, fd);
        if conn.sending == 0 && !conn.queued.is_empty() && !conn.failed {
            let bytes = std::mem::take(&mut conn.queued);
            conn.sending = bytes.len();
            ring.send(fd, bytes, 0, conn.sending)?;
        }
        let done = conn.failed || (conn.peer_finished && conn.unsent() == 0);
        let wants_bytes = !done && !conn.peer_finished && conn.unsent() < max_pending;
        match conn.recv {
            InKernel::Off if wants_bytes && conn.peer_hung_up => {
                conn.recv = InKernel::Armed(ring.recv_once(fd)?)
            }
            InKernel::Off if wants_bytes => conn.recv = InKernel::Armed(ring.recv_multi(fd)?),
            InKernel::Armed(op) if !wants_bytes => {
                ring.cancel(op)?;
                conn.recv = InKernel::Stopping;
            }
            _ => {}
        }
        if let InKernel::Armed(op) = conn.hang_up_watch {
            if done {
                ring.cancel(op)?; // it holds a reference to the socket
                conn.hang_up_watch = InKernel::Stopping;
            }
        }
        let kernel_holds_nothing =
            conn.recv == InKernel::Off && conn.hang_up_watch == InKernel::Off && conn.sending == 0;
        if done && kernel_holds_nothing {
            let slot = usize::try_from(fd)?;
            if let Err(e) = ring.unregister_file(fd) {
                eprintln!("echo-uring: unregister fd {fd}: {e}");
            }
            self.conns[slot] = None; // close(2)
            self.pause.resume(); // an fd is free: accept again if EMFILE paused it
        }
        Ok(())
    }
}

/// The connection on `fd`: every completion is for an open one, as a connection closes only
/// once the kernel holds nothing of it.
fn conns_get(conns: &mut [Option<Conn>], fd: RawFd) -> &mut Conn {
    let slot = usize::try_from(fd).expect("fds are not negative");
    conns[slot]
        .as_mut()
        .expect("a completion for a closed connection")
}
