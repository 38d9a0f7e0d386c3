//! # Lab 07: a fork-per-connection echo server
//!
//! ```text
//! cargo run --release --bin echo-fork                  # reaps finished children on SIGCHLD
//! cargo run --release --bin echo-fork -- --reap none   # leaves one zombie per finished client
//! strace -f -tt -e trace=accept4,clone,wait4,kill,close,exit_group -p PID
//! ps -o pid,ppid,stat,cmd --ppid PID                   # the children, and any zombies
//! ```
//!
//! The oldest way to serve many clients: the parent only accepts, and `fork`s a child for each
//! connection. The child echoes with plain blocking calls and exits when its client leaves.
//! Each client costs a whole process (a copy-on-write address space, a pid, a `clone` and an
//! `exit_group`), and the parent owes every child a `wait`.
//!
//! What to look for:
//! - after `clone`, the parent `close`s its copy of the client socket: the connection ends only
//!   when every descriptor for it is closed, so a parent that kept it would leak an fd per
//!   client and its clients would never see end of file;
//! - the child `close`s its copy of the listener first thing: it never accepts;
//! - with `--reap none`, finished clients pile up as zombies (`Z`, `<defunct>` in ps);
//! - with `--reap sigchld` (the default), each SIGCHLD interrupts the parent's `accept4`
//!   (`= -1 EINTR` in strace), and the parent collects every finished child with
//!   `wait4(-1, ..., WNOHANG)` in a loop: one SIGCHLD can stand for many children.
//!
//! `bytes=` in the stopped line: the parent never sees the data, so each child reports its byte
//! count (and whether its connection ended in an error) to the parent through a pipe as it
//! exits. On SIGTERM the parent stops accepting and sends SIGTERM to every child; a child's own
//! handler then `shutdown`s its connection, so its blocked `read` returns end of file and it
//! reports and exits as if the client had left. The parent reaps them all, then prints the sum.
//! (A child signalled in the instant between its birth and installing that handler dies of
//! the default action and reports nothing: its bytes are missing from the sum.)

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use netlab_core::echo::READ_CHUNK;
use netlab_core::process::{self, Pid, Sigchld};
use netlab_core::{
    exit_on_error, is_fd_exhausted, parse_args, EchoConn, Listener, Model, Server, ServerArgs,
    Stats, Step, Stream,
};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::{TimeVal, TimeValLike};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// Fork-per-connection echo server: the parent accepts, a child serves each client.
#[derive(Parser)]
#[command(name = "echo-fork", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    /// How the parent collects finished children: `sigchld` reaps them when SIGCHLD arrives;
    /// `none` never does (until it stops), leaving one zombie per finished client.
    #[arg(long, value_enum, default_value_t = Reap::Sigchld)]
    reap: Reap,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Reap {
    None,
    Sigchld,
}

fn main() {
    let cli: Cli = parse_args();
    exit_on_error("echo-fork", run(cli));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let model = Model {
        name: "fork",
        trace: "accept4,clone,wait4,kill,close,exit_group",
    };
    // Before the "listening" line, so the parent's descriptors are all open once it prints.
    let reports = ChildReports::new()?;
    let server = Server::start(model, &cli.server)?;

    // SA_RESTART or EINTR? With SA_RESTART the kernel restarts a blocking accept4 after the
    // handler runs, so the loop below would not notice a child had exited (or that SIGTERM came)
    // until the next client connected. So we install SIGCHLD without SA_RESTART, and take it
    // off the stop/report signals too: accept4 returns EINTR, which is not an error, only "a
    // signal came: reap, check the flags, accept again". The catch is that every blocking call
    // in the parent must now expect EINTR (the children reset all of this to default).
    process::set_sigchld(match cli.reap {
        Reap::Sigchld => Sigchld::Count { restart: false },
        // SIG_DFL: the signal is discarded, but unlike SIG_IGN nobody reaps: zombies stay.
        Reap::None => Sigchld::Default,
    })?;
    process::interrupt_blocking_calls(&[Signal::SIGINT, Signal::SIGTERM, Signal::SIGUSR1])?;
    // A signal that lands after the flag check but before accept4 starts would wait for the
    // next client (the race ppoll exists to close). accept4 honours SO_RCVTIMEO: waking once a
    // second (`= -1 EAGAIN` in strace) bounds that wait.
    setsockopt(&server.listener, ReceiveTimeout, &TimeVal::seconds(1))?;

    let mut children: HashSet<Pid> = HashSet::new();
    loop {
        if server.signals.take_report() {
            server.signals.drain(); // nobody polls the wake pipe here; keep it from filling
            reports.collect(&server.stats);
            server.report();
        }
        if server.signals.stop_requested() {
            break;
        }
        if process::take_sigchld() > 0 {
            reap_finished(&mut children);
        }
        reports.collect(&server.stats);

        let stream = match accept(&server.listener) {
            Some(stream) => stream,
            None => continue,
        };
        let mut stream = Some(stream);
        let forked = process::fork_child(|| {
            let stream = stream.take().expect("the child takes the stream once");
            serve_client(&server, stream, &reports)
        });
        // The parent's copy of the client socket: close(2) it now. The child has its own.
        drop(stream);
        match forked {
            Ok(child) => {
                children.insert(child);
                Stats::add(&server.stats.connections, 1);
            }
            Err(e) => {
                // EAGAIN: out of processes (RLIMIT_NPROC, or zombies holding every pid).
                eprintln!("echo-fork: fork: {e}; connection closed");
                Stats::add(&server.stats.refused, 1);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    stop_children(&mut children, &reports, &server.stats);
    server.finish();
    Ok(())
}

/// One `accept4` on the blocking listener. `None` when it was interrupted (EINTR: a signal),
/// timed out (EAGAIN: SO_RCVTIMEO) or failed for this one connection.
///
/// Not `Listener::accept`: that goes through std, which retries EINTR itself, so a signal
/// would never reach this loop. `accept_nonblocking` is one bare `accept4` call: on our
/// blocking listener it still sleeps until a client comes; its SOCK_NONBLOCK applies only to
/// the new socket, which the child makes blocking again.
fn accept(listener: &Listener) -> Option<Stream> {
    match listener.accept_nonblocking() {
        Ok(stream) => Some(stream),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) => None,
        Err(e) if is_fd_exhausted(&e) => {
            eprintln!("echo-fork: accept4: {e}; retrying in 100 ms");
            std::thread::sleep(Duration::from_millis(100));
            None
        }
        Err(e) => {
            eprintln!("echo-fork: accept4: {e}"); // ECONNABORTED: that client already left
            None
        }
    }
}

/// The child's whole life: drop the listener, echo until the client leaves, report, exit.
fn serve_client(server: &Server, stream: Stream, reports: &ChildReports) -> i32 {
    process::close_inherited(&server.listener); // a child never accepts
    let mut conn = EchoConn::new(stream, server.max_pending);
    // fork_child reset the parent's handlers to default (SIGTERM would kill us mid-call, with
    // nothing reported): instead, SIGTERM shuts the connection down and the loop ends normally.
    let result = process::shutdown_on_stop_signals(&conn.stream)
        .and_then(|()| conn.stream.set_nonblocking(false))
        .and_then(|()| no_receive_timeout(&conn.stream))
        .and_then(|()| echo(&mut conn));
    reports.send(conn.bytes_echoed, result.is_err());
    i32::from(result.is_err())
}

/// A TCP connection inherits the listener's socket options, SO_RCVTIMEO included (the kernel
/// clones the listening socket to make it): clear it, or an idle client would wake the child's
/// `read` every second (EAGAIN), and a signal would make it fail with EINTR despite SA_RESTART
/// (signal(7): socket calls with a timeout are never restarted).
fn no_receive_timeout(stream: &Stream) -> io::Result<()> {
    setsockopt(stream, ReceiveTimeout, &TimeVal::zero()).map_err(io::Error::from)
}

/// Blocking echo: read, then write all of it back, then read again (as in lab 01).
fn echo(conn: &mut EchoConn) -> io::Result<()> {
    let mut scratch = vec![0u8; READ_CHUNK];
    loop {
        if conn.read_once(&mut scratch)? == Step::Eof {
            return Ok(());
        }
        while conn.pending() > 0 {
            conn.write_once()?;
        }
    }
}

/// `wait4(-1, ..., WNOHANG)` until no exited child is left: one SIGCHLD may stand for many
/// exits (standard signals do not queue), so one `wait` per signal would leave zombies.
fn reap_finished(children: &mut HashSet<Pid>) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    children.remove(&pid);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("echo-fork: wait4: {e}");
                return;
            }
        }
    }
}

/// On stop: SIGTERM every child (each shuts its connection down, reports and exits), reap them
/// all, and SIGKILL any that is still there after a second.
fn stop_children(children: &mut HashSet<Pid>, reports: &ChildReports, stats: &Stats) {
    for &child in children.iter() {
        let _ = kill(child, Signal::SIGTERM); // a zombie ignores it; it is reaped below
    }
    let all_reaped = process::eventually(Duration::from_secs(1), || {
        reports.collect(stats); // keep the pipe drained, or a child could block writing to it
        reap_finished(children);
        children.is_empty()
    });
    reports.collect(stats);
    if !all_reaped {
        for &child in children.iter() {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
        }
        children.clear();
    }
}

/// Children tell the parent what they did through one pipe: a 16-byte record each as it exits
/// (bytes echoed, then 1 if the connection ended in an error). A `write` of at most PIPE_BUF
/// (4096) bytes to a pipe is atomic, so records from many children never interleave.
struct ChildReports {
    /// Non-blocking: the parent only takes what is there.
    read: File,
    /// Blocking, inherited by every child.
    write: File,
}

impl ChildReports {
    fn new() -> io::Result<ChildReports> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        Ok(ChildReports {
            read: File::from(read),
            write: File::from(write),
        })
    }

    /// In a child: one record, one `write(2)`.
    fn send(&self, bytes: u64, failed: bool) {
        let mut record = [0u8; 16];
        record[..8].copy_from_slice(&bytes.to_le_bytes());
        record[8..].copy_from_slice(&u64::from(failed).to_le_bytes());
        let _ = (&self.write).write_all(&record);
    }

    /// In the parent: adds every record waiting in the pipe to the counters.
    fn collect(&self, stats: &Stats) {
        let mut buf = [0u8; 4096]; // whole records: every write was one atomic 16-byte record
        loop {
            match (&self.read).read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    for record in buf[..n].chunks_exact(16) {
                        let bytes = u64::from_le_bytes(record[..8].try_into().unwrap());
                        let failed = u64::from_le_bytes(record[8..].try_into().unwrap());
                        Stats::add(&stats.bytes, bytes);
                        Stats::add(&stats.errors, failed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return, // EAGAIN: nothing more for now
            }
        }
    }
}
