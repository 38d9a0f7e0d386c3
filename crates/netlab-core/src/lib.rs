//! netlab-core: the parts every netlab server does the same way, written once.
//!
//! A lab file shows one way of waiting for I/O; everything else lives here:
//!
//! | module       | what it holds                                                        |
//! |--------------|----------------------------------------------------------------------|
//! | [`cli`]      | the shared server flags, sizes (`1MiB`) and durations (`10s`), one-line errors |
//! | [`listener`] | the listening socket (TCP or Unix, built with socket2) and [`Stream`]  |
//! | [`echo`]     | the per-connection echo buffer: [`EchoConn`], [`Step`], [`Want`]       |
//! | [`signals`]  | SIGINT/SIGTERM/SIGUSR1 as flags plus a self-pipe a wait loop can watch |
//! | [`netns`]    | a private network namespace, /proc/net/tcp states, TCP counters, sysctls |
//! | [`server`]   | [`Server`]: bind, announce the "listening" line, count, summarise      |
//! | [`procfs`]   | /proc probes: CPU ticks, context switches, RSS, open fds, state        |
//! | [`process`]  | `fork` and friends, the one place process creation is `unsafe`         |
//! | [`uring`]    | io_uring with buffers that move in and out: the completion lab's `unsafe` |
//!
//! Raw libc calls and `unsafe` stay in this crate, each with a `// SAFETY:` reason: the
//! workspace denies `unsafe_code` everywhere else, and this crate's Cargo.toml allows it.

pub mod cli;
pub mod echo;
pub mod listener;
pub mod netns;
pub mod process;
pub mod procfs;
pub mod server;
pub mod signals;
pub mod uring;

pub use cli::{parse_args, parse_duration, parse_size, ServerArgs};
pub use echo::{Drain, EchoConn, Step, Want};
pub use listener::{is_fd_exhausted, AcceptPause, Listener, Stream};
pub use server::{
    exit_on_error, listen_tcp, raise_fd_limit, run_main, Accepted, Model, Server, Stats, Summary,
};
pub use signals::Signals;
