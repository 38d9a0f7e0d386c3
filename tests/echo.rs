//! One harness, every echo server: the behaviour every server must have, checked the same way for
//! each I/O model over TCP and over a Unix-domain socket.
//!
//! Each behaviour is a function `fn(&Spec, Transport)`; the `every_server!` table at the bottom
//! turns every (server, transport, behaviour) into its own `#[test]`, so a failure names all three:
//! `epoll_lt::unix::half_close_echoes_everything_then_eof`.
//!
//! ```text
//! cargo test --test echo                  # everything
//! cargo test --test echo select::         # one server
//! cargo test --test echo reset            # one behaviour, every server
//! ```
//!
//! The servers are the debug builds cargo makes for tests, so sizes are kept to tens of MiB per
//! test. Every client socket has a read timeout and every loop a bound, so a broken server fails
//! a test instead of hanging it.

mod common;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_same_bytes, first_difference, pattern, Client, Launch, ServerProcess, Transport,
};
use netlab_core::process::eventually;
use nix::sys::signal::Signal;

const MIB: usize = 1 << 20;

/// One server configuration: the binary and the flags that select its mode.
#[derive(Debug, Clone, Copy)]
struct Spec {
    program: &'static str,
    args: &'static [&'static str],
    /// Serves many clients at once. `echo-blocking --mode iterative` serves one at a time, so
    /// the behaviours that need two clients in flight do not apply to it.
    concurrent: bool,
    /// Serves each connection in a child process (its memory is the child's).
    forks: bool,
}

impl Spec {
    fn launch(&self) -> Launch {
        Launch::new(self.program).args(self.args.iter().copied())
    }

    /// Starts the server on a fresh address of this transport.
    fn start(&self, transport: Transport) -> ServerProcess {
        self.start_with(self.launch().listen_on(transport))
    }

    fn start_with(&self, launch: Launch) -> ServerProcess {
        launch.spawn().unwrap_or_else(|e| panic!("{e}"))
    }
}

const BLOCKING_THREADS: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-blocking"),
    args: &["--mode", "threads"],
    concurrent: true,
    forks: false,
};
const BLOCKING_ITERATIVE: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-blocking"),
    args: &["--mode", "iterative"],
    concurrent: false,
    forks: false,
};
const SELECT: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-select"),
    args: &[],
    concurrent: true,
    forks: false,
};
const POLL: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-poll"),
    args: &[],
    concurrent: true,
    forks: false,
};
const EPOLL_LT: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-epoll-lt"),
    args: &[],
    concurrent: true,
    forks: false,
};
const FORK: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-fork"),
    args: &[],
    concurrent: true,
    forks: true,
};
const EPOLL_ET: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-epoll-et"),
    args: &[],
    concurrent: true,
    forks: false,
};
const EPOLL_ET_TO_EAGAIN: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-epoll-et"),
    args: &["--drain-to-eagain"],
    concurrent: true,
    forks: false,
};
const MIO: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-mio"),
    args: &[],
    concurrent: true,
    forks: false,
};
const MIO_TO_EAGAIN: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-mio"),
    args: &["--drain-to-eagain"],
    concurrent: true,
    forks: false,
};
const URING: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-uring"),
    args: &[],
    concurrent: true,
    forks: false,
};
const URING_SQPOLL: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-uring"),
    args: &["--sqpoll"],
    concurrent: true,
    forks: false,
};
const TOKIO: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-tokio"),
    args: &[],
    concurrent: true,
    forks: false,
};
const TOKIO_THREADS: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-tokio"),
    args: &["--threads", "2"],
    concurrent: true,
    forks: false,
};
const C: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-c"),
    args: &[],
    concurrent: true,
    forks: false,
};
const REUSEPORT: Spec = Spec {
    program: env!("CARGO_BIN_EXE_echo-reuseport"),
    args: &["--threads", "2"],
    concurrent: true,
    forks: false,
};

// ---------------------------------------------------------------------------------------------
// Byte-exact echo

/// 50 clients connected at once, each with its own byte pattern in 4 KiB round trips; the
/// summary counts every connection and exactly the bytes echoed.
fn echoes_50_concurrent_clients(spec: &Spec, transport: Transport) {
    const CLIENTS: usize = 50;
    const CHUNK: usize = 4096;
    const ROUNDS: usize = 16;
    let mut server = spec.start(transport);
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let addr = server.addr.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || -> Result<(), String> {
                let client = addr.connect();
                // Everyone is connected before anyone talks, so the server holds all 50 at once.
                barrier.wait();
                let mut client = client.map_err(|e| format!("client {i}: connect: {e}"))?;
                let data = pattern(i as u64, CHUNK * ROUNDS);
                for (round, chunk) in data.chunks(CHUNK).enumerate() {
                    let back = client
                        .round_trip(chunk)
                        .map_err(|e| format!("client {i} round {round}: {e}"))?;
                    if let Some(at) = first_difference(chunk, &back) {
                        return Err(format!("client {i} round {round}: differs at byte {at}"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .filter_map(|w| w.join().expect("client thread panicked").err())
        .collect();
    assert!(failures.is_empty(), "{}: {failures:?}", server.describe());

    let stopped = server.stop();
    assert!(stopped.status.success(), "exit status {}", stopped.status);
    let summary = stopped.summary();
    assert!(
        summary.connections >= CLIENTS as u64,
        "summary counts {} connections, expected at least {CLIENTS}",
        summary.connections
    );
    assert_eq!(
        summary.bytes,
        (CLIENTS * CHUNK * ROUNDS) as u64,
        "summary bytes= is the bytes echoed"
    );
}

/// 32 MiB in one write, far more than the socket buffers hold, while the client reads slowly:
/// the server must keep partial writes and stop reading when its peer cannot take more.
fn echoes_32_mib_to_a_slow_reader(spec: &Spec, transport: Transport) {
    const SIZE: usize = 32 * MIB;
    const SLEEP_EVERY: usize = 64 * 1024;
    let mut server = spec.start(transport);
    let message = Arc::new(pattern(32, SIZE));
    let mut client = server.connect();
    client
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let writer = {
        let mut client = client.try_clone().unwrap();
        let message = Arc::clone(&message);
        thread::spawn(move || client.write_all(&message))
    };
    let mut received = 0;
    let mut next_sleep = SLEEP_EVERY;
    let mut buf = vec![0; 64 * 1024];
    while received < SIZE {
        let n = match client.read(&mut buf) {
            Ok(0) => panic!(
                "{}: end of file after {received} of {SIZE} bytes",
                server.describe()
            ),
            Ok(n) => n,
            Err(e) => panic!(
                "{}: read after {received} of {SIZE} bytes: {e}",
                server.describe()
            ),
        };
        if let Some(at) = first_difference(&message[received..received + n], &buf[..n]) {
            panic!(
                "{}: echo differs at byte {}",
                server.describe(),
                received + at
            );
        }
        received += n;
        // A slow reader: about 64 MiB/s at most, so the server meets a full send buffer.
        if received >= next_sleep {
            thread::sleep(Duration::from_millis(1));
            next_sleep += SLEEP_EVERY;
        }
    }
    writer.join().unwrap().expect("the 32 MiB write");
    server.assert_running("after a 32 MiB echo");
}

/// 10,000 messages of 16 bytes written in one go, then read back: every message, in order.
fn echoes_10000_pipelined_small_messages(spec: &Spec, transport: Transport) {
    const COUNT: usize = 10_000;
    const SIZE: usize = 16;
    let server = spec.start(transport);
    let mut messages = Vec::with_capacity(COUNT * SIZE);
    for i in 0..COUNT {
        // "msg 00001234" plus 4 pattern bytes: a lost or doubled message shifts every later one.
        messages.extend_from_slice(format!("msg {i:08}").as_bytes());
        messages.extend_from_slice(&pattern(i as u64, SIZE - 12));
    }
    let mut client = server.connect();
    let writer = {
        let mut client = client.try_clone().unwrap();
        let messages = messages.clone();
        thread::spawn(move || client.write_all(&messages))
    };
    let mut back = vec![0; messages.len()];
    if let Err(e) = client.read_exact(&mut back) {
        panic!("{}: reading the pipelined echo: {e}", server.describe());
    }
    writer.join().unwrap().expect("the pipelined write");
    if let Some(at) = first_difference(&messages, &back) {
        panic!(
            "{}: message {} differs (byte {at})",
            server.describe(),
            at / SIZE
        );
    }
}

/// The client sends, then `shutdown(SHUT_WR)`: it gets every byte back, then end of file (not a
/// reset, not silence). Also for an empty and a tiny message. The client starts reading only
/// once it has shut down (or after 1 s if its writes block), so the end of file reaches the
/// server while echo is still queued there: a server that closes at EOF loses that tail. (Over
/// TCP on loopback the server's send buffer grows to megabytes, hence the 6 MiB case.)
fn half_close_echoes_everything_then_eof(spec: &Spec, transport: Transport) {
    let server = spec.start(transport);
    for size in [0, 5, 300_000, 1_000_000, 6 << 20] {
        half_close_once(&server, &pattern(size as u64, size), Duration::from_secs(1));
    }
}

/// One client of [`half_close_echoes_everything_then_eof`]: sends `message`, shuts down its
/// sending side, and must read every byte back, then end of file. It starts reading once the
/// writer is done, or after `read_after` if the writes block.
fn half_close_once(server: &ServerProcess, message: &[u8], read_after: Duration) {
    let size = message.len();
    // A small receive buffer, so the echo queues in the server rather than in our socket.
    let mut client = server
        .addr
        .connect_with_receive_buffer(8 * 1024)
        .expect("connect");
    let (done_sender, done) = std::sync::mpsc::channel();
    let writer = {
        let mut client = client.try_clone().unwrap();
        let message = message.to_vec();
        thread::spawn(move || {
            let result = client
                .write_all(&message)
                .and_then(|()| client.shutdown(Shutdown::Write));
            let _ = done_sender.send(());
            result
        })
    };
    let _ = done.recv_timeout(read_after);
    let (back, end) = client.read_to_end_or_error();
    writer
        .join()
        .unwrap()
        .expect("write then shutdown(SHUT_WR)");
    if let Err(e) = end {
        panic!(
            "{}: {size}-byte half-close: after {} bytes, {e} instead of end of file",
            server.describe(),
            back.len()
        );
    }
    assert_same_bytes(message, &back, &format!("{size}-byte half-close"));
}

/// io_uring's multishot receive over a Unix socket missed the end of file now and then on Linux
/// 6.18 (labs/09-io-uring, `on_hung_up`): after --max-pending had cancelled it and it was
/// asked again, it delivered the last bytes and waited for a wake-up that never came. One run
/// of [`half_close_echoes_everything_then_eof`] caught that about once in 20; with a small
/// --max-pending and the reads 20 ms late, the code before the fix failed this within its first
/// few dozen clients in each of three runs.
#[test]
fn uring_unix_half_close_100_times_with_a_small_max_pending() {
    let server = URING.start_with(
        URING
            .launch()
            .listen_on(Transport::Unix)
            .args(["--max-pending", "65536"]),
    );
    let message = pattern(29, 6 << 20);
    for _ in 0..100 {
        half_close_once(&server, &message, Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Resets and descriptor leaks

/// Clients that reset mid-stream (RST with echo still in flight) end only their own connection:
/// a steady client keeps echoing across them, and new clients are served afterwards.
fn reset_mid_stream_ends_only_that_connection(spec: &Spec, transport: Transport) {
    const VICTIMS: u64 = 10;
    const SENT: usize = 256 * 1024;
    let mut server = spec.start(transport);
    let mut steady = spec.concurrent.then(|| server.connect());
    let steady_message = pattern(1, 8 * 1024);
    for victim_number in 0..VICTIMS {
        if let Some(steady) = &mut steady {
            let back = steady.round_trip(&steady_message).unwrap_or_else(|e| {
                panic!(
                    "{}: steady client, round {victim_number}: {e}",
                    server.describe()
                )
            });
            assert_same_bytes(&steady_message, &back, "steady client");
        }
        let mut victim = server.connect();
        let message = pattern(100 + victim_number, SENT);
        victim.write_all(&message).expect("victim's write");
        let mut start_of_echo = vec![0; 4096];
        victim
            .read_exact(&mut start_of_echo)
            .expect("victim reads the start of its echo");
        assert_same_bytes(&message[..4096], &start_of_echo, "victim's echo");
        // The rest of the echo stays unread: RST for TCP, ECONNRESET for a Unix socket's peer.
        victim.reset();
    }
    server.assert_running("after clients reset mid-stream");
    if let Some(steady) = &mut steady {
        let back = steady
            .round_trip(&steady_message)
            .expect("steady client after the resets");
        assert_same_bytes(&steady_message, &back, "steady client after the resets");
    }
    drop(steady);
    let late_message = pattern(2, 1000);
    let back = server
        .connect()
        .round_trip(&late_message)
        .expect("a new client after the resets");
    assert_same_bytes(&late_message, &back, "new client after the resets");
}

/// 2,000 connect/close cycles, mixing clean closes, resets after an echo, resets with the echo
/// unread and connections closed before the server even accepted them: afterwards the server's
/// open descriptors return to what they were.
fn fds_return_to_baseline_after_2000_connections(spec: &Spec, transport: Transport) {
    const CYCLES: usize = 2000;
    let mut server = spec.start(transport);
    // One connection first, so whatever the server sets up lazily is part of the baseline.
    let warm_up = pattern(0, 16);
    assert_same_bytes(
        &warm_up,
        &server.connect().round_trip(&warm_up).expect("warm-up echo"),
        "warm-up echo",
    );
    let baseline = settled_fd_count(&server);
    for cycle in 0..CYCLES {
        let mut client = server.connect();
        let message = pattern(cycle as u64, 16);
        match cycle % 4 {
            0 => {
                let back = client
                    .round_trip(&message)
                    .expect("echo before a clean close");
                assert_same_bytes(&message, &back, "echo before a clean close");
                drop(client);
            }
            1 => {
                let back = client.round_trip(&message).expect("echo before a reset");
                assert_same_bytes(&message, &back, "echo before a reset");
                client.reset();
            }
            2 => {
                client.write_all(&message).expect("write before a reset");
                client.reset();
            }
            _ => drop(client),
        }
    }
    server.assert_running("after 2000 connections");
    // Closes are asynchronous: the server notices EOF or RST on a later wake-up.
    let mut now = server.open_fds();
    let back_to_baseline = eventually(Duration::from_secs(10), || {
        now = server.open_fds();
        now == baseline
    });
    assert!(
        back_to_baseline,
        "{}: {now} open fds 10 s after 2000 connections closed, baseline {baseline}",
        server.describe()
    );
    let back = server.connect().round_trip(&warm_up).expect("echo after");
    assert_same_bytes(&warm_up, &back, "echo after the churn");
}

/// The server's open fd count once it has stopped changing (a thread or process may still be
/// closing a connection).
fn settled_fd_count(server: &ServerProcess) -> usize {
    let mut last = server.open_fds();
    let mut same_for = 0;
    for _ in 0..100 {
        thread::sleep(Duration::from_millis(30));
        let now = server.open_fds();
        same_for = if now == last { same_for + 1 } else { 0 };
        last = now;
        if same_for >= 5 {
            break;
        }
    }
    last
}

// ---------------------------------------------------------------------------------------------
// Signals

/// SIGUSR1 interrupts the wait call (EINTR, never restarted by the kernel): sent 200 times while
/// clients echo, it must print the counters and disturb nothing.
fn sigusr1_storm_disturbs_nothing(spec: &Spec, transport: Transport) {
    const SIGNALS: usize = 200;
    let mut server = spec.start(transport);
    let clients = if spec.concurrent { 4 } else { 1 };
    let stop = Arc::new(AtomicBool::new(false));
    let rounds_done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let mut client = server.connect();
            let stop = Arc::clone(&stop);
            let rounds_done = Arc::clone(&rounds_done);
            thread::spawn(move || -> Result<usize, String> {
                let message = pattern(i, 8 * 1024);
                let mut rounds = 0;
                // Bounded: at most 100,000 rounds even if the stop flag never came.
                while !stop.load(Ordering::Relaxed) && rounds < 100_000 {
                    let back = client
                        .round_trip(&message)
                        .map_err(|e| format!("client {i} round {rounds}: {e}"))?;
                    if let Some(at) = first_difference(&message, &back) {
                        return Err(format!("client {i} round {rounds}: differs at byte {at}"));
                    }
                    rounds += 1;
                    rounds_done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(rounds)
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || {
            rounds_done.load(Ordering::Relaxed) >= clients as usize
        }),
        "{}: clients did not start echoing",
        server.describe()
    );
    for _ in 0..SIGNALS {
        server.signal(Signal::SIGUSR1);
        thread::sleep(Duration::from_millis(2));
    }
    // Some more echo after the last signal.
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let rounds = worker.join().expect("client thread panicked");
        let rounds = rounds.unwrap_or_else(|e| panic!("{}: {e}", server.describe()));
        assert!(rounds > 0);
    }
    server.assert_running(&format!("after {SIGNALS} SIGUSR1"));
    let counters_line = |text: &str| {
        text.lines()
            .any(|line| line.contains("connections=") && line.contains("bytes="))
    };
    assert!(
        server.wait_for_stderr(Duration::from_secs(2), counters_line),
        "{}: no counters line on stderr after SIGUSR1; stderr {:?}",
        server.describe(),
        server.stderr_text()
    );
    let stopped = server.stop();
    assert!(stopped.status.success(), "exit status {}", stopped.status);
    stopped.summary();
}

// ---------------------------------------------------------------------------------------------
// Limits: descriptors, memory

/// With RLIMIT_NOFILE low, more clients connect than the server has descriptors for. accept(2)
/// fails with EMFILE and the connection stays queued, so the listener stays readable: a server
/// that keeps asking spins. It must keep serving its clients, sleep, and take the waiting ones
/// once descriptors free up.
fn emfile_keeps_serving_without_spinning(spec: &Spec, transport: Transport) {
    const LIMIT: u64 = 64;
    const WAITING: usize = 10;
    const CLOSED_LATER: usize = 20;
    let mut server = spec.start_with(spec.launch().listen_on(transport).nofile_limit(LIMIT));
    let mut first = server.connect();
    let message = pattern(5, 1024);
    assert_same_bytes(
        &message,
        &first.round_trip(&message).unwrap(),
        "first client",
    );
    let free = (LIMIT as usize).saturating_sub(settled_fd_count(&server));
    assert!(free > CLOSED_LATER, "server starts with too many fds open");
    let mut clients: Vec<Client> = (0..free + WAITING).map(|_| server.connect()).collect();
    // Let the server accept what it can and meet EMFILE.
    thread::sleep(Duration::from_millis(300));
    server.assert_running("at the descriptor limit");
    for (i, client) in clients.iter_mut().take(5).enumerate() {
        let back = client
            .round_trip(&message)
            .unwrap_or_else(|e| panic!("{}: client {i} at the fd limit: {e}", server.describe()));
        assert_same_bytes(&message, &back, "a client accepted before the limit");
    }
    assert_same_bytes(
        &message,
        &first
            .round_trip(&message)
            .expect("first client at the limit"),
        "first client at the fd limit",
    );

    // Not spinning: CPU over a second while the limit holds stays far below a core.
    let ticks_per_second = netlab_core::procfs::clock_ticks_per_second();
    let (cpu_before, started) = (server.cpu_ticks(), Instant::now());
    thread::sleep(Duration::from_secs(1));
    let cpu = server.cpu_ticks() - cpu_before;
    eprintln!(
        "{}: {free} fds free, {WAITING} clients over the limit; {cpu} CPU ticks in {:?} at the limit",
        server.describe(),
        started.elapsed()
    );
    // A spinning loop takes most of a core even on a busy machine; a sleeping one takes ~0.
    let limit = started.elapsed().as_secs_f64() * ticks_per_second as f64 * 0.2;
    assert!(
        (cpu as f64) < limit,
        "{}: used {cpu} ticks of CPU in {:?} at the fd limit (spinning on accept?)",
        server.describe(),
        started.elapsed()
    );

    // Free descriptors: the waiting clients are accepted and served.
    drop(clients.drain(..CLOSED_LATER));
    for (i, client) in clients.iter_mut().enumerate() {
        let back = client.round_trip(&message).unwrap_or_else(|e| {
            panic!(
                "{}: client {} (of {}, {WAITING} waited) after fds freed up: {e}; \
                 the server has {} fds open, {} threads",
                server.describe(),
                CLOSED_LATER + i,
                free + WAITING,
                server.open_fds(),
                netlab_core::procfs::status(server.pid).map_or(0, |s| s.threads),
            )
        });
        assert_same_bytes(&message, &back, "a client that waited for a free fd");
    }
    server.assert_running("after the descriptor limit");
}

/// select(2) can watch only fds below FD_SETSIZE (1024): nix's FdSet::insert panics above it and
/// libc's FD_SET aborts. A connection that lands on fd >= 1024 must be closed and counted in
/// refused=, logged once, and the server must keep serving the others.
fn select_refuses_fds_above_fd_setsize(spec: &Spec, transport: Transport) {
    const CLIENTS: usize = 1100;
    raise_own_fd_limit();
    // All 1100 may wait in the accept queue at once: a backlog that holds them.
    let mut server = spec.start_with(
        spec.launch()
            .listen_on(transport)
            .args(["--backlog", "2048"])
            .nofile_limit(4096),
    );
    let base = settled_fd_count(&server);
    let clients: Vec<Client> = (0..CLIENTS).map(|_| server.connect()).collect();
    // A refused client sees end of file without having sent anything; a served one sees
    // nothing, and holds one of the server's fds. Wait until every client is one or the other.
    let mut refused = Vec::new();
    let mut kept = 0;
    eventually(Duration::from_secs(10), || {
        refused = readable_clients(&clients);
        kept = server.open_fds().saturating_sub(base);
        refused.len() + kept == CLIENTS
    });
    server.assert_running(&format!("with {CLIENTS} clients"));
    assert_eq!(
        (refused.len(), refused.len() + kept),
        (CLIENTS - kept, CLIENTS),
        "{}: {} clients refused and {kept} connections held, of {CLIENTS}",
        server.describe(),
        refused.len()
    );
    eprintln!(
        "{}: {} fds at start, {kept} connections kept, {} refused",
        server.describe(),
        base,
        refused.len()
    );
    assert!(
        !refused.is_empty(),
        "{}: with {CLIENTS} clients none was refused",
        server.describe()
    );
    assert!(
        server.open_fds() <= 1024,
        "{}: holds {} fds, so some are at or above FD_SETSIZE",
        server.describe(),
        server.open_fds()
    );
    let mut served = 0;
    let message = pattern(7, 64);
    for (i, mut client) in clients.into_iter().enumerate() {
        if refused.contains(&i) {
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut buf = [0u8; 16];
            match client.read(&mut buf) {
                Ok(0) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                other => panic!("refused client {i}: expected end of file, got {other:?}"),
            }
        } else {
            let back = client
                .round_trip(&message)
                .unwrap_or_else(|e| panic!("{}: served client {i}: {e}", server.describe()));
            assert_same_bytes(&message, &back, "a client below FD_SETSIZE");
            served += 1;
        }
    }
    let stderr = server.stderr_text();
    let refusal_lines: Vec<&str> = stderr
        .lines()
        .filter(|line| {
            let line = line.to_ascii_lowercase();
            line.contains("fd_setsize") || line.contains("refus")
        })
        .collect();
    assert_eq!(
        refusal_lines.len(),
        1,
        "{}: {} refusals should be logged once; stderr: {stderr:?}",
        server.describe(),
        refused.len(),
    );
    let stopped = server.stop();
    assert!(stopped.status.success(), "exit status {}", stopped.status);
    let summary = stopped.summary();
    assert_eq!(
        summary.refused,
        refused.len() as u64,
        "refused= counts the connections closed at FD_SETSIZE"
    );
    assert!(
        summary.connections >= served,
        "connections= counts the served ones"
    );
}

/// The indices of the clients whose socket is readable now (data or end of file).
fn readable_clients(clients: &[Client]) -> Vec<usize> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds: Vec<PollFd> = clients
        .iter()
        .map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN))
        .collect();
    poll(&mut fds, PollTimeout::ZERO).expect("poll the clients");
    fds.iter()
        .enumerate()
        .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
        .map(|(i, _)| i)
        .collect()
}

/// Lets this test process open more than 1024 sockets: soft RLIMIT_NOFILE up to the hard limit.
fn raise_own_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        soft >= 2500,
        "this test needs ulimit -n of at least 2500, have {soft}"
    );
}

/// A client that sends 64 MiB and never reads: the server stops reading from it at
/// --max-pending, so its memory grows by about that much and no more, and the client's writes
/// stall (back-pressure). Meanwhile another client echoes as usual.
fn never_reading_client_is_bounded_by_max_pending(spec: &Spec, transport: Transport) {
    const SEND: usize = 64 * MIB;
    const MAX_PENDING: usize = MIB;
    const SLACK: usize = 4 * MIB;
    let mut server = spec.start_with(
        spec.launch()
            .listen_on(transport)
            .args(["--max-pending", "1MiB"]),
    );
    let message = pattern(8, 8 * 1024);
    let mut other = Some(server.connect());
    if let Some(other) = &mut other {
        assert_same_bytes(&message, &other.round_trip(&message).unwrap(), "warm-up");
    }
    if !spec.concurrent {
        // One client at a time: this one must leave before the hog can be served.
        other = None;
        thread::sleep(Duration::from_millis(100));
    }
    let mut memory = TreeMemory::new(server.pid);
    let mut hog = server.connect();
    if spec.forks {
        // The hog's own process: measure it from before it has read anything.
        let children = memory.children();
        eventually(Duration::from_secs(2), || {
            netlab_core::process::children_of(server.pid).len() > children
        });
    }
    memory.sample();
    hog.set_nonblocking(true).unwrap();
    let chunk = pattern(9, MIB);
    let mut sent = 0;
    let (started, mut last_progress) = (Instant::now(), Instant::now());
    let mut last_sample = Instant::now();
    // Write until everything went or nothing moved for 500 ms (bounded to 10 s in all).
    while sent < SEND && last_progress.elapsed() < Duration::from_millis(500) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "write loop bound"
        );
        let at = sent % chunk.len();
        match hog.write(&chunk[at..]) {
            Ok(n) => {
                sent += n;
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!(
                "{}: the never-reading client's write: {e}",
                server.describe()
            ),
        }
        if last_sample.elapsed() >= Duration::from_millis(20) {
            memory.sample();
            last_sample = Instant::now();
        }
    }
    memory.sample();
    assert!(
        sent < SEND,
        "{}: the server took all {SEND} bytes from a client that never reads (no back-pressure)",
        server.describe()
    );
    let growth_kib = memory.growth_kib();
    eprintln!(
        "{}: {sent} bytes sent before the writes stalled; RSS grew by {growth_kib} KiB",
        server.describe()
    );
    assert!(
        growth_kib as usize * 1024 <= MAX_PENDING + SLACK,
        "{}: RSS grew by {growth_kib} KiB with --max-pending 1MiB ({sent} bytes sent, never read)",
        server.describe()
    );
    if let Some(other) = &mut other {
        for round in 0..20 {
            let back = other.round_trip(&message).unwrap_or_else(|e| {
                panic!(
                    "{}: other client, round {round}, beside a stalled one: {e}",
                    server.describe()
                )
            });
            assert_same_bytes(&message, &back, "the other client");
        }
    }
    server.assert_running("beside a client that never reads");
}

/// Peak resident memory of a server and its child processes, each measured from the first time
/// it was seen, so a process forked per connection counts only what it grew by.
struct TreeMemory {
    pid: i32,
    first_kib: HashMap<i32, u64>,
    peak_kib: HashMap<i32, u64>,
}

impl TreeMemory {
    fn new(pid: i32) -> TreeMemory {
        let mut memory = TreeMemory {
            pid,
            first_kib: HashMap::new(),
            peak_kib: HashMap::new(),
        };
        memory.sample();
        memory
    }

    /// How many live children the server has now.
    fn children(&self) -> usize {
        netlab_core::process::children_of(self.pid).len()
    }

    fn sample(&mut self) {
        let children = netlab_core::process::children_of(self.pid);
        let live = children.iter().filter(|c| c.state != 'Z').map(|c| c.pid);
        for pid in std::iter::once(self.pid).chain(live) {
            // A process exiting meanwhile is skipped (and a zombie has no memory).
            let Ok(status) = netlab_core::procfs::status(pid) else {
                continue;
            };
            if status.vm_rss_kib == 0 {
                continue;
            }
            self.first_kib.entry(pid).or_insert(status.vm_rss_kib);
            let peak = self.peak_kib.entry(pid).or_insert(0);
            *peak = (*peak).max(status.vm_rss_kib);
        }
    }

    /// Sum over the processes of (peak - first sample), KiB.
    fn growth_kib(&self) -> u64 {
        self.peak_kib
            .iter()
            .map(|(pid, peak)| peak.saturating_sub(self.first_kib[pid]))
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Shutdown and the command line

/// SIGTERM with idle and active clients connected: the server closes them, prints the summary,
/// exits 0 within a couple of seconds; a restart binds the same address at once (and stops on
/// SIGINT the same way).
fn sigterm_stops_gracefully_and_restart_binds_at_once(spec: &Spec, transport: Transport) {
    let mut server = spec.start(transport);
    let message = pattern(11, 4096);
    let mut idle: Vec<Client> = (0..3).map(|_| server.connect()).collect();
    assert_same_bytes(
        &message,
        &idle[0].round_trip(&message).expect("idle client's echo"),
        "idle client",
    );
    let received = Arc::new(AtomicU64::new(0));
    let active = if spec.concurrent { 2 } else { 0 };
    let workers: Vec<_> = (0..active)
        .map(|i| {
            let mut client = server.connect();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let received = Arc::clone(&received);
            thread::spawn(move || -> io::Error {
                let message = pattern(20 + i, 4096);
                for _ in 0..1_000_000 {
                    match client.round_trip(&message) {
                        Ok(back) if back == message => {
                            received.fetch_add(back.len() as u64, Ordering::Relaxed);
                        }
                        Ok(_) => return io::Error::other("wrong bytes echoed"),
                        Err(e) => return e,
                    }
                }
                io::Error::other("the server never stopped")
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || {
            received.load(Ordering::Relaxed) >= active * 40_960
        }),
        "{}: the active clients did not get going",
        server.describe()
    );

    let stopped = server.stop();
    assert!(
        stopped.status.success(),
        "{}: exit status {} after SIGTERM",
        server.describe(),
        stopped.status
    );
    let summary = stopped.summary();
    assert_eq!(summary.model, server.model, "model= in the summary");
    let expected_connections = if spec.concurrent { 3 + active } else { 1 };
    assert!(
        summary.connections >= expected_connections,
        "summary counts {} connections, expected at least {expected_connections}",
        summary.connections
    );
    assert!(
        summary.bytes >= received.load(Ordering::Relaxed) + message.len() as u64,
        "summary bytes={} but the clients received {}",
        summary.bytes,
        received.load(Ordering::Relaxed)
    );
    for worker in workers {
        let ended = worker.join().expect("active client thread panicked");
        assert!(
            is_closed_by_peer(&ended),
            "an active client saw {ended:?}, not a closed connection"
        );
    }
    for (i, client) in idle.iter_mut().enumerate() {
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 16];
        match client.read(&mut buf) {
            Ok(0) => {}
            Err(e) if is_closed_by_peer(&e) => {}
            other => panic!("idle client {i} after SIGTERM: expected end of file, got {other:?}"),
        }
    }

    // The same port (or path), at once: SO_REUSEADDR despite connections in TIME_WAIT.
    let mut restarted = spec.start_with(spec.launch().listen_at(&server.addr, Some(&server)));
    assert_eq!(
        restarted.addr, server.addr,
        "restart listens where the first did"
    );
    let back = restarted
        .connect()
        .round_trip(&message)
        .expect("echo after restart");
    assert_same_bytes(&message, &back, "echo after restart");
    let stopped = restarted.stop_with(Signal::SIGINT);
    assert!(
        stopped.status.success(),
        "exit status {} after SIGINT",
        stopped.status
    );
    assert_eq!(stopped.summary().model, server.model);
}

/// End of file, a reset, or a broken pipe: what a client sees when the server closed on it.
fn is_closed_by_peer(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A second instance on an address in use: one line on stderr, non-zero exit, and the first
/// instance goes on serving.
fn busy_address_is_a_one_line_error(spec: &Spec, transport: Transport) {
    let mut first = spec.start(transport);
    let second = spec
        .launch()
        .listen_at(&first.addr, Some(&first))
        .run(Duration::from_secs(5));
    assert!(
        !second.status.success(),
        "a second instance on {} exited with {}",
        first.addr,
        second.status
    );
    assert_one_line(&second.stderr, "busy address");
    assert!(
        !second.stdout.contains("listening on"),
        "the second instance claims to listen: {:?}",
        second.stdout
    );
    first.assert_running("after a second instance tried its address");
    let message = pattern(12, 100);
    assert_same_bytes(
        &message,
        &first.connect().round_trip(&message).unwrap(),
        "first instance after the second failed",
    );
}

/// `--help` exits 0 with usage on stdout; bad flags give one line on stderr and a non-zero exit.
fn help_and_bad_flags(spec: &Spec) {
    let timeout = Duration::from_secs(5);
    let help = spec.launch().arg("--help").run(timeout);
    assert!(help.status.success(), "--help exited with {}", help.status);
    assert!(help.stdout.contains("Usage"), "--help: {:?}", help.stdout);
    for flag in ["--addr", "--unix", "--backlog", "--max-pending"] {
        assert!(help.stdout.contains(flag), "--help does not mention {flag}");
    }
    let bad_inputs: [&[&str]; 5] = [
        &["--no-such-flag"],
        &["--backlog", "many"],
        &["--max-pending", "12x"],
        &["--addr", "not-an-address"],
        &[
            "--addr",
            "127.0.0.1:0",
            "--unix",
            "/tmp/netlab-never-used.sock",
        ],
    ];
    for bad in bad_inputs {
        let run = spec.launch().args(bad.iter().copied()).run(timeout);
        let what = bad.join(" ");
        assert!(!run.status.success(), "`{what}` exited with {}", run.status);
        assert_one_line(&run.stderr, &what);
        assert!(run.stdout.is_empty(), "`{what}` printed {:?}", run.stdout);
    }
}

#[track_caller]
fn assert_one_line(stderr: &str, what: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && !lines[0].trim().is_empty(),
        "{what}: expected a one-line error on stderr, got {stderr:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Threads: the stack is reserved, not used

/// `echo-blocking --stack-size 64k` against the default (2 MiB): with 50 idle connections (each
/// echoed once, so its thread has run), the address space grows by about 2 MiB less per thread,
/// while resident memory grows by about the same.
#[test]
fn blocking_stack_size_shrinks_vmsize_not_rss() {
    const CLIENTS: usize = 50;
    let growth = |extra: &[&str]| -> (u64, u64) {
        // One malloc arena: glibc otherwise maps up to 8 per core, 64 MiB each, as threads
        // first allocate, and how many a run gets varies by more than the stacks this measures.
        let server = BLOCKING_THREADS.start_with(
            BLOCKING_THREADS
                .launch()
                .args(extra.iter().copied())
                .env("MALLOC_ARENA_MAX", "1")
                .listen_on(Transport::Tcp),
        );
        let before = vm_size_and_rss_kib(server.pid);
        let clients: Vec<Client> = (0..CLIENTS)
            .map(|i| {
                let mut client = server.connect();
                let message = pattern(i as u64, 64);
                assert_same_bytes(&message, &client.round_trip(&message).unwrap(), "echo");
                client
            })
            .collect();
        let threads = netlab_core::procfs::status(server.pid).unwrap().threads;
        assert!(
            threads > CLIENTS as u64,
            "{threads} threads for {CLIENTS} clients"
        );
        let after = vm_size_and_rss_kib(server.pid);
        drop(clients);
        (after.0 - before.0, after.1.saturating_sub(before.1))
    };
    let (vm_default, rss_default) = growth(&[]);
    let (vm_small, rss_small) = growth(&["--stack-size", "64k"]);
    eprintln!(
        "{CLIENTS} threads: VmSize +{vm_default} KiB, RSS +{rss_default} KiB by default; \
         VmSize +{vm_small} KiB, RSS +{rss_small} KiB with --stack-size 64k"
    );
    // 2 MiB against 64 KiB per thread, less some slack for what else each start mapped.
    let shrink = vm_default.saturating_sub(vm_small);
    assert!(
        shrink >= CLIENTS as u64 * 1900,
        "VmSize grew by {vm_default} KiB (default) and {vm_small} KiB (64k): only {shrink} KiB less"
    );
    let rss_gap = rss_default.abs_diff(rss_small);
    assert!(
        rss_gap <= (CLIENTS as u64 * 16).max(1024),
        "RSS grew by {rss_default} KiB (default) and {rss_small} KiB (64k): the reservation moved it"
    );
}

/// `VmSize` and `VmRSS` from /proc/PID/status, KiB.
fn vm_size_and_rss_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmSize:"), field("VmRSS:"))
}

// ---------------------------------------------------------------------------------------------
// SO_REUSEPORT: the kernel spreads connections over the loops

/// `echo-reuseport --threads 2` over TCP: two listening sockets on the one port, and 40
/// connections land on both loops (the kernel hashes each connection's addresses; all 40 on one
/// loop would happen about once in 10^12 runs). The per-loop counts add up to connections=.
#[test]
fn reuseport_spreads_connections_over_its_loops() {
    const CLIENTS: usize = 40;
    let mut server = REUSEPORT.start(Transport::Tcp);
    let tcp_addr = match &server.addr {
        common::Address::Tcp(addr) => *addr,
        other => panic!("not a TCP address: {other}"),
    };
    let listening = listening_sockets(tcp_addr.port());
    assert_eq!(listening, 2, "LISTEN sockets on port {}", tcp_addr.port());
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            let mut client = server.connect();
            let message = pattern(i as u64, 32);
            assert_same_bytes(&message, &client.round_trip(&message).unwrap(), "echo");
            client
        })
        .collect();
    drop(clients);
    let stopped = server.stop();
    assert!(stopped.status.success(), "exit status {}", stopped.status);
    let per_loop: Vec<u64> = stopped
        .stderr
        .lines()
        .find_map(|line| line.strip_prefix("echo-reuseport: connections per loop: "))
        .unwrap_or_else(|| panic!("no per-loop line on stderr: {:?}", stopped.stderr))
        .split_whitespace()
        .map(|n| n.parse().expect("a count"))
        .collect();
    assert_eq!(per_loop.len(), 2, "two loops: {per_loop:?}");
    assert!(
        per_loop.iter().all(|&n| n > 0),
        "the kernel gave every connection to one loop: {per_loop:?}"
    );
    assert_eq!(per_loop.iter().sum::<u64>(), stopped.summary().connections);
    assert_eq!(stopped.summary().connections, CLIENTS as u64);
}

/// TCP sockets in state LISTEN (0A) on `port`, from /proc/net/tcp (IPv4).
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == "0A"
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// Edge-triggered epoll: the classic mistake, made visible

/// Edge-triggered with `--broken-read-once` must stall, on every run, as lab 05's README says:
/// the server is stopped (SIGSTOP) while the client sends 100,000 bytes, so all of them wait in
/// the server's receive buffer before it even accepts. Registering the socket then gives one
/// edge, the broken loop makes one 64 KiB read and echoes it, and since nothing arrives after
/// that, no edge ever announces the other 34,464 bytes: exactly 65,536 come back. The default
/// loop, draining to EAGAIN, echoes everything (here 8 MiB from a writer that keeps sending).
///
/// TCP only: over a Unix socket the broken mode still finishes, because every buffer the client
/// reads frees space on the server's sending side and a Unix socket reports that as a new
/// EPOLLOUT edge each time (TCP only does so after a write found the buffer full), and the
/// server reads once on every edge, whatever it says.
fn broken_read_once_stalls_a_large_message(spec: &Spec, transport: Transport) {
    const SIZE: usize = 8 * MIB;
    const STALLED_SIZE: usize = 100_000;
    const ONE_READ: usize = 64 * 1024; // netlab_core::echo::READ_CHUNK
    let message = Arc::new(pattern(13, SIZE));

    let server = spec.start_with(spec.launch().listen_on(transport));
    let (received, sent) = echo_until_stall(&server, &message);
    assert_eq!(
        (sent, received),
        (SIZE, SIZE),
        "{}: default mode (sent, received)",
        server.describe()
    );

    let server = spec.start_with(spec.launch().listen_on(transport).arg("--broken-read-once"));
    server.signal(Signal::SIGSTOP);
    let mut client = server.connect(); // the kernel finishes the handshake; nobody accepts yet
    client.write_all(&message[..STALLED_SIZE]).unwrap();
    thread::sleep(Duration::from_millis(200)); // loopback delivers at once; this is margin
    server.signal(Signal::SIGCONT);
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut echoed = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    let mut last_progress = Instant::now();
    while last_progress.elapsed() < Duration::from_secs(2) && echoed.len() < STALLED_SIZE {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                echoed.extend_from_slice(&buf[..n]);
                last_progress = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!(
                "{}: read after {} bytes: {e}",
                server.describe(),
                echoed.len()
            ),
        }
    }
    assert_eq!(
        echoed.len(),
        ONE_READ,
        "{}: --broken-read-once should echo one read's worth and stall",
        server.describe()
    );
    assert_eq!(first_difference(&message[..ONE_READ], &echoed), None);
}

/// Sends `message` from one thread and reads the echo in this one, checking every byte, until
/// it all came back or nothing came for 2 s. Returns (bytes received, bytes sent).
fn echo_until_stall(server: &ServerProcess, message: &Arc<Vec<u8>>) -> (usize, usize) {
    let mut client = server.connect();
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    client
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let writer = {
        let mut client = client.try_clone().unwrap();
        let message = Arc::clone(message);
        thread::spawn(move || {
            let mut sent = 0;
            while sent < message.len() {
                match client.write(&message[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break, // the write timeout: the server stopped reading
                }
            }
            sent
        })
    };
    let mut received = 0;
    let mut buf = vec![0; 64 * 1024];
    let mut last_progress = Instant::now();
    let started = Instant::now();
    while received < message.len()
        && last_progress.elapsed() < Duration::from_secs(2)
        && started.elapsed() < Duration::from_secs(30)
    {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(at) = first_difference(&message[received..received + n], &buf[..n]) {
                    panic!(
                        "{}: echo differs at byte {}",
                        server.describe(),
                        received + at
                    );
                }
                received += n;
                last_progress = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{}: read after {received} bytes: {e}", server.describe()),
        }
    }
    // Closing our end unblocks a writer stuck on a stalled server at once.
    client.shutdown(Shutdown::Both).ok();
    (received, writer.join().unwrap())
}

// ---------------------------------------------------------------------------------------------
// The table: one #[test] per (server, transport, behaviour).

/// `tests!(SPEC, TRANSPORT; behaviour, ...)`: one test function per behaviour.
macro_rules! tests {
    ($spec:expr, $transport:expr; $($behaviour:ident),* $(,)?) => {
        $(
            #[test]
            fn $behaviour() {
                crate::$behaviour(&$spec, $transport);
            }
        )*
    };
}

/// `server!(module, SPEC; per_transport: [...]; tcp_only: [...]; once: [...])`: a module per
/// server with `tcp` and `unix` submodules.
macro_rules! server {
    ($module:ident, $spec:expr;
     per_transport: [$($behaviour:ident),* $(,)?];
     tcp_only: [$($tcp_only:ident),* $(,)?];
     once: [$($once:ident),* $(,)?]) => {
        mod $module {
            mod tcp {
                tests!($spec, crate::Transport::Tcp; $($behaviour,)* $($tcp_only),*);
            }
            mod unix {
                tests!($spec, crate::Transport::Unix; $($behaviour),*);
            }
            $(
                #[test]
                fn $once() {
                    crate::$once(&$spec);
                }
            )*
        }
    };
}

/// Everything that holds for every server, concurrent or not, plus the `extra` behaviours.
macro_rules! every_server {
    ($module:ident, $spec:expr; extra: [$($extra:ident),* $(,)?] $(; tcp_only: [$($tcp_only:ident),*])?) => {
        server!($module, $spec;
            per_transport: [
                echoes_32_mib_to_a_slow_reader,
                echoes_10000_pipelined_small_messages,
                half_close_echoes_everything_then_eof,
                reset_mid_stream_ends_only_that_connection,
                fds_return_to_baseline_after_2000_connections,
                sigusr1_storm_disturbs_nothing,
                never_reading_client_is_bounded_by_max_pending,
                sigterm_stops_gracefully_and_restart_binds_at_once,
                busy_address_is_a_one_line_error,
                $($extra),*
            ];
            tcp_only: [$($($tcp_only),*)?];
            once: [help_and_bad_flags]);
    };
}

every_server!(epoll_lt, crate::EPOLL_LT; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
every_server!(epoll_et, crate::EPOLL_ET; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]; tcp_only: [broken_read_once_stalls_a_large_message]);
// The textbook edge-triggered loop (read until EAGAIN), kept behind a flag beside the default.
every_server!(epoll_et_to_eagain, crate::EPOLL_ET_TO_EAGAIN; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
every_server!(poll, crate::POLL; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
every_server!(select, crate::SELECT; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
    select_refuses_fds_above_fd_setsize,
]);
every_server!(blocking_threads, crate::BLOCKING_THREADS; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
// One client at a time: no behaviour that needs two clients in flight.
every_server!(blocking_iterative, crate::BLOCKING_ITERATIVE; extra: []);
every_server!(fork, crate::FORK; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
every_server!(mio, crate::MIO; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
every_server!(mio_to_eagain, crate::MIO_TO_EAGAIN; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
every_server!(uring, crate::URING; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
// A kernel thread polls the submission ring; it must sleep when idle (the EMFILE check sees it).
every_server!(uring_sqpoll, crate::URING_SQPOLL; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
every_server!(tokio, crate::TOKIO; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
every_server!(tokio_threads, crate::TOKIO_THREADS; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
every_server!(c, crate::C; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
every_server!(reuseport, crate::REUSEPORT; extra: [
    echoes_50_concurrent_clients,
    emfile_keeps_serving_without_spinning,
]);
