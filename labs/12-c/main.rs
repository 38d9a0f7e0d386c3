//! # Lab 12: the same echo server in plain C, the calibration row
//!
//! ```text
//! cargo run --release --bin echo-c
//! strace -f -tt -e trace=epoll_wait,epoll_ctl,accept4,read,sendto,close -p PID
//! ```
//!
//! What to look for: the loop is `echo.c` beside this file, a level-triggered epoll echo server
//! as a C programmer writes it, compiled at build time by the `cc` crate (build.rs at the root).
//! It is here to be measured: `loadgen compare` runs it beside the Rust loops, on the same
//! client, so the table says how far each of them is from plain C. strace shows what lab 04
//! does, with `read` in place of std's `recvfrom`: one `read` and one `sendto` per message, and
//! `epoll_ctl(EPOLL_CTL_MOD)` only when a write is partial.
//!
//! This file does what every netlab server shares: the flags, the listener, the signal
//! self-pipe, the "listening" line and the summary. Then it hands the two descriptors to the C
//! loop and gets the counters back. Built where there was no C compiler, it prints
//! `echo-c: not built: REASON` and exits with status 69 (EX_UNAVAILABLE).
//!
//! Compare with lab 04: `labs/04-epoll-lt/main.rs` against `labs/12-c/echo.c`.

use clap::Parser;
use netlab_core::{exit_on_error, parse_args, ServerArgs};

/// Echo server in C on epoll, level-triggered: the calibration row of `loadgen compare`.
#[derive(Parser)]
#[command(name = "echo-c", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() {
    let cli: Cli = parse_args();
    exit_on_error("echo-c", c_loop::run(cli));
}

#[cfg(not(netlab_c))]
mod c_loop {
    /// Built without a C compiler: nothing to run.
    pub fn run(_cli: super::Cli) -> anyhow::Result<()> {
        eprintln!("echo-c: not built: {}", env!("NETLAB_C_NOT_BUILT"));
        std::process::exit(69);
    }
}

#[cfg(netlab_c)]
mod c_loop {
    use std::os::fd::AsRawFd;
    use std::os::raw::c_int;
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

    use netlab_core::{Model, Server};

    /// Each connection's buffer in the C loop: one read, written back whole before the next.
    const BUFFER: usize = 16 * 1024;

    /// `struct netlab_c_counters` in echo.c.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Counters {
        connections: u64,
        bytes: u64,
        refused: u64,
        errors: u64,
    }

    extern "C" {
        /// echo.c: serves until `on_signal` returns non-zero; 0, or -1 with errno set.
        fn netlab_c_echo(
            listen_fd: c_int,
            signal_fd: c_int,
            buf_size: usize,
            out: *mut Counters,
            on_signal: extern "C" fn(Counters) -> c_int,
        ) -> c_int;
    }

    /// The server, where the C loop's signal callback can reach it.
    static SERVER: Mutex<Option<Server>> = Mutex::new(None);

    pub fn run(cli: super::Cli) -> anyhow::Result<()> {
        let model = Model {
            name: "c",
            trace: "epoll_wait,epoll_ctl,accept4,read,sendto,close",
        };
        let server = Server::start(model, &cli.server)?;
        server.listener.set_nonblocking(true)?;
        let listen_fd = server.listener.as_raw_fd();
        let signal_fd = server.signals.wake_fd().as_raw_fd();
        let buf_size = cli.server.max_pending.min(BUFFER);
        *SERVER.lock().unwrap() = Some(server);

        let mut counters = Counters::default();
        // SAFETY: both fds stay open until the call returns (the server owning them sits in
        // SERVER until then); `counters` is a valid, exclusive place for the C code to write
        // its result; `on_signal` matches the C prototype. echo.c touches no other Rust memory.
        #[allow(unsafe_code)]
        let status =
            unsafe { netlab_c_echo(listen_fd, signal_fd, buf_size, &mut counters, on_signal) };
        let error = std::io::Error::last_os_error();
        let server = SERVER
            .lock()
            .unwrap()
            .take()
            .expect("the server is still there");
        if status != 0 {
            return Err(anyhow::anyhow!("the C loop failed: {error}"));
        }
        counters.store(&server);
        server.finish();
        Ok(())
    }

    /// Called by the C loop when the signal pipe is readable: drains it, prints the counters on
    /// SIGUSR1, and answers 1 (stop) after SIGINT or SIGTERM.
    extern "C" fn on_signal(counters: Counters) -> c_int {
        let server = SERVER.lock().unwrap();
        let server = server.as_ref().expect("the server is running");
        counters.store(server);
        c_int::from(server.on_signal())
    }

    impl Counters {
        /// Into the server's own counters, for the report and the summary line.
        fn store(&self, server: &Server) {
            let stats = &server.stats;
            stats.connections.store(self.connections, Ordering::Relaxed);
            stats.bytes.store(self.bytes, Ordering::Relaxed);
            stats.refused.store(self.refused, Ordering::Relaxed);
            stats.errors.store(self.errors, Ordering::Relaxed);
        }
    }
}
