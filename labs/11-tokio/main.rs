//! # Lab 11: an echo server on tokio
//!
//! ```text
//! cargo run --release --bin echo-tokio                  # current-thread runtime: one thread
//! cargo run --release --bin echo-tokio -- --threads 2   # multi-thread runtime, 2 workers
//! strace -f -tt -e trace=epoll_wait,epoll_ctl,accept4,recvfrom,sendto,close -p PID
//! ```
//!
//! What to look for: this is the server most Rust users would write, and it reads like the
//! blocking one of lab 01 (read, write it all back, read again), with `.await` where lab 01
//! blocks. Underneath, a task that awaits is parked in the runtime, not in the kernel: strace
//! shows the edge-triggered epoll of lab 08 (tokio is built on mio), each socket added once with
//! `EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET`, and no thread per connection. A task costs a few
//! hundred bytes of state instead of a thread's stack.
//!
//! The runtime is current-thread by default, so the whole server is one thread (like the other
//! event loops, pinned to one core when compared). `--threads N` starts tokio's multi-thread
//! runtime with N workers that steal tasks from each other.
//!
//! `--max-pending` in tokio's model: each task owns a buffer of [`BUFFER`] bytes (16 KiB, or
//! `--max-pending` if that is less) and does not read again until `write_all` has sent it all,
//! so a client that never reads holds at most one buffer in the server. Back-pressure is simply
//! the task waiting in `write_all`. The buffer is the task's memory cost; the task itself (its
//! `async fn` state) is a few hundred bytes.
//!
//! Compare with lab 08: `diff labs/08-mio/main.rs labs/11-tokio/main.rs` shows what the runtime
//! takes off your hands: the event loop, the token table, the drain-to-EAGAIN rule.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use netlab_core::{
    exit_on_error, is_fd_exhausted, parse_args, Listener, Model, Server, ServerArgs, Stats,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Echo server on tokio: a task per connection, on a current-thread runtime unless --threads.
#[derive(Parser)]
#[command(name = "echo-tokio", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// 1: tokio's current-thread runtime (the whole server is one thread); N > 1: the
    /// multi-thread runtime with N worker threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
}

fn main() {
    let cli: Cli = parse_args();
    exit_on_error("echo-tokio", run(cli));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let model = Model {
        name: "tokio",
        trace: "epoll_wait,epoll_ctl,accept4,recvfrom,sendto,close",
    };
    let runtime = match cli.threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n.into());
            builder
        }
    }
    .enable_all()
    .build()?;
    let server = Arc::new(Server::start(model, &cli.server)?);

    runtime.block_on(serve(Arc::clone(&server)))?;
    // Dropping the runtime drops every task, and with it every connection (close(2)).
    drop(runtime);
    let server = Arc::into_inner(server).expect("no task outlives the runtime");
    server.finish();
    Ok(())
}

/// The listener, as tokio's (the same socket, registered with the runtime's epoll).
enum AsyncListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Each connection task's buffer: one read's worth, written back whole before the next read.
const BUFFER: usize = 16 * 1024;

/// One accepted connection, as tokio's.
enum AsyncStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The accept loop: a task per connection, until SIGINT or SIGTERM.
async fn serve(server: Arc<Server>) -> anyhow::Result<()> {
    // tokio takes ownership of a socket it registers, so hand it a duplicate (`dup(2)`) and
    // keep netlab-core's listener, which removes a Unix socket's path when dropped.
    let listener = match &server.listener {
        Listener::Tcp(l) => {
            let l = l.try_clone()?;
            l.set_nonblocking(true)?;
            AsyncListener::Tcp(TcpListener::from_std(l)?)
        }
        Listener::Unix(l, _) => {
            let l = l.try_clone()?;
            l.set_nonblocking(true)?;
            AsyncListener::Unix(UnixListener::from_std(l)?)
        }
    };
    // The signal self-pipe (a socketpair), also as tokio's: readable when a signal came.
    let wake: OwnedFd = server.signals.wake_fd().try_clone_to_owned()?;
    let mut wake = UnixStream::from_std(std::os::unix::net::UnixStream::from(wake))?;
    let mut at_fd_limit = false;
    let mut signal_byte = [0u8; 64];

    loop {
        tokio::select! {
            accepted = accept(&listener) => match accepted {
                Ok(stream) => {
                    at_fd_limit = false;
                    Stats::add(&server.stats.connections, 1);
                    tokio::spawn(connection(Arc::clone(&server), stream));
                }
                Err(e) if is_fd_exhausted(&e) => {
                    // The connection stays queued and the listener readable: accepting again
                    // at once would spin. Try again after a pause (said once per episode).
                    if !std::mem::replace(&mut at_fd_limit, true) {
                        eprintln!("echo-tokio: accept4: {e}; retrying every 100 ms");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // ECONNABORTED and friends: that one connection is gone, the next may be fine.
                Err(e) => eprintln!("echo-tokio: accept4: {e}"),
            },
            _ = wake.read(&mut signal_byte) => {
                if server.on_signal() {
                    return Ok(()); // SIGINT or SIGTERM
                }
            }
        }
    }
}

/// Waits for the next connection: `accept4(..., SOCK_CLOEXEC|SOCK_NONBLOCK)` when the runtime's
/// epoll says the listener is readable.
async fn accept(listener: &AsyncListener) -> io::Result<AsyncStream> {
    match listener {
        AsyncListener::Tcp(l) => l.accept().await.map(|(s, _)| AsyncStream::Tcp(s)),
        AsyncListener::Unix(l) => l.accept().await.map(|(s, _)| AsyncStream::Unix(s)),
    }
}

/// One connection's task: echo until the peer finishes, count the bytes and any error.
async fn connection(server: Arc<Server>, stream: AsyncStream) {
    let buffer_size = server.max_pending.min(BUFFER);
    let result = match stream {
        AsyncStream::Tcp(s) => echo(s, buffer_size, &server.stats).await,
        AsyncStream::Unix(s) => echo(s, buffer_size, &server.stats).await,
    };
    if result.is_err() {
        Stats::add(&server.stats.errors, 1); // ECONNRESET, EPIPE: only this connection ends
    }
} // the stream is dropped here: close(2)

/// The echo loop, as lab 01 writes it, with `.await` where lab 01 blocks. A half-close (read
/// returns 0) ends it after everything read was written back; the drop then closes the socket.
async fn echo(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    buffer_size: usize,
    stats: &Stats,
) -> io::Result<()> {
    let mut buffer = vec![0u8; buffer_size];
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buffer[..n]).await?;
        Stats::add(&stats.bytes, n as u64);
    }
}
