//! # Lab 09: an echo server on `io_uring`
//!
//! ```text
//! cargo run --release --bin echo-uring
//! strace -f -tt -e trace=io_uring_setup,io_uring_enter,close -p PID
//! ```
//!
//! What to look for: no `accept4`, no `recvfrom`, no `sendto` on a client socket (only on the
//! signal pipe, which is read the ordinary way). Every other lab asks the
//! kernel "which sockets are ready?" and then does the I/O itself (readiness). Here the server
//! hands the kernel the I/O to do, "receive into this buffer", "send these bytes", through a
//! ring of submissions in shared memory, and collects the results from a ring of completions
//! (completion). One `io_uring_enter` submits a whole batch and waits for results:
//!
//! ```text
//! io_uring_enter(9, 2, 1, IORING_ENTER_GETEVENTS, NULL, 128) = 2
//! ```
//!
//! reads "2 submitted, wait for at least 1 completion". The price: a buffer belongs to the kernel
//! from submission until completion, so every connection with a receive in flight owns its own
//! buffer (`BUFFER` bytes here), where the epoll labs share one scratch buffer per loop. Each
//! connection has exactly one operation in flight, a receive or a send, so a client that never
//! reads holds at most one buffer of the server's memory (`--max-pending` does not come into it).
//!
//! Compare with a readiness server: `diff labs/04-epoll-lt/main.rs labs/09-io-uring/main.rs`.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};

use clap::Parser;
use netlab_core::uring::{Completion, Ring};
use netlab_core::{
    exit_on_error, is_fd_exhausted, parse_args, AcceptPause, Model, Server, ServerArgs, Stats,
    Stream,
};

/// Echo server on io_uring: submit the I/O, collect completions.
#[derive(Parser)]
#[command(name = "echo-uring", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() {
    let cli: Cli = parse_args();
    exit_on_error("echo-uring", run(cli));
}

/// Each connection's receive buffer: the kernel holds it while a receive is in flight.
const BUFFER: usize = 16 * 1024;

fn run(cli: Cli) -> anyhow::Result<()> {
    let model = Model {
        name: "uring",
        trace: "io_uring_setup,io_uring_enter,close",
    };
    let server = Server::start(model, &cli.server)?;
    let signals_fd = server.signals.wake_fd().as_raw_fd();

    let mut ring = Ring::new(4096)?;
    ring.accept(&server.listener)?;
    ring.poll_readable(signals_fd)?;

    // Indexed by fd; each connection has one operation in flight, which holds its buffer.
    let mut conns: HashMap<RawFd, Stream> = HashMap::new();
    let mut emfile_logged = false;
    let mut stopping = false;

    while !stopping {
        let completions = match ring.submit_and_wait() {
            Ok(completions) => completions,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue, // EINTR: a signal
            Err(e) => return Err(e.into()),
        };
        for completion in completions {
            match completion {
                Completion::Accepted(Ok(fd)) => {
                    let stream = server.listener.stream_from(fd);
                    let fd = stream.as_raw_fd();
                    conns.insert(fd, stream);
                    Stats::add(&server.stats.connections, 1);
                    ring.recv(fd, vec![0; BUFFER])?; // the first thing a connection does
                    ring.accept(&server.listener)?; // and the next connection
                    emfile_logged = false;
                }
                Completion::Accepted(Err(e)) if is_fd_exhausted(&e) => {
                    // The connection stays queued; asking again at once would spin. Ask later.
                    if !std::mem::replace(&mut emfile_logged, true) {
                        eprintln!(
                            "echo-uring: accept: {e}; retrying every {:?}",
                            AcceptPause::BACKOFF
                        );
                    }
                    ring.timeout(AcceptPause::BACKOFF)?;
                }
                Completion::Accepted(Err(e)) => {
                    eprintln!("echo-uring: accept: {e}");
                    ring.accept(&server.listener)?;
                }
                Completion::TimedOut => ring.accept(&server.listener)?,
                Completion::Readable { .. } => {
                    // Stop after this batch: the rest of it may hold finished sends to count.
                    stopping = server.on_signal();
                    if !stopping {
                        ring.poll_readable(signals_fd)?; // one-shot: ask again
                    }
                }
                Completion::Received { fd, buf, result } => {
                    on_received(&server.stats, &mut ring, &mut conns, fd, buf, result)?
                }
                Completion::Sent {
                    fd,
                    buf,
                    start,
                    end,
                    result,
                } => on_sent(
                    &server.stats,
                    &mut ring,
                    &mut conns,
                    fd,
                    buf,
                    start..end,
                    result,
                )?,
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
    drop(conns);
    server.finish();
    Ok(())
}

/// A receive finished: send back what arrived, or close on end of file or error.
fn on_received(
    stats: &Stats,
    ring: &mut Ring,
    conns: &mut HashMap<RawFd, Stream>,
    fd: RawFd,
    buf: Vec<u8>,
    result: std::io::Result<usize>,
) -> anyhow::Result<()> {
    match result {
        Ok(0) => {
            conns.remove(&fd); // the client finished, and everything it sent was echoed
        }
        Ok(n) => ring.send(fd, buf, 0, n)?,
        Err(_) => {
            Stats::add(&stats.errors, 1); // ECONNRESET: only this connection ends
            conns.remove(&fd);
        }
    }
    Ok(())
}

/// A send finished: send the rest if it was partial, else receive again into the same buffer.
fn on_sent(
    stats: &Stats,
    ring: &mut Ring,
    conns: &mut HashMap<RawFd, Stream>,
    fd: RawFd,
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
    result: std::io::Result<usize>,
) -> anyhow::Result<()> {
    match result {
        Ok(sent) => {
            Stats::add(&stats.bytes, sent as u64);
            if range.start + sent < range.end {
                ring.send(fd, buf, range.start + sent, range.end)?;
            } else {
                ring.recv(fd, buf)?;
            }
        }
        Err(_) => {
            Stats::add(&stats.errors, 1); // EPIPE, ECONNRESET: only this connection ends
            conns.remove(&fd);
        }
    }
    Ok(())
}
