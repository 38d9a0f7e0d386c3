//! Process creation for the process labs: the one place `fork(2)` is called, and the few other
//! process-level calls that are `unsafe` (installing signal handlers, `_exit`).
//!
//! | function                     | syscalls, in order                                          |
//! |------------------------------|-------------------------------------------------------------|
//! | [`fork_child`]               | `rt_sigprocmask`, `clone` (fork), in the child `rt_sigaction` resets, the closure, `exit_group` |
//! | [`set_sigchld`]              | `rt_sigaction(SIGCHLD, ...)`                                |
//! | [`interrupt_blocking_calls`] | `rt_sigaction` read, `rt_sigaction` write without SA_RESTART |
//! | [`shutdown_on_stop_signals`] | `rt_sigaction(SIGTERM/SIGINT)`; on the signal, `shutdown(fd, SHUT_RDWR)` |
//! | [`children_of`]              | reads `/proc/*/stat` (no syscall on the processes themselves) |
//!
//! Why `fork` is `unsafe`: after `fork` only the calling thread exists in the child. If another
//! thread held a lock (the allocator's, stdout's) at that moment, the child inherits it locked
//! forever, and the first `malloc` deadlocks. A single-threaded process has no such thread, so
//! the child may run ordinary Rust code. [`fork_child`] checks that before it forks.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::ForkResult;

pub use nix::unistd::Pid;

/// Forks and runs `child` in the child process, which then ends with `_exit(code)` (the closure's
/// return value): the child never returns into the caller's code, so no destructor the parent
/// owns runs twice (a Unix listener's Drop would remove the socket path the parent still serves).
/// Returns the child's pid in the parent.
///
/// Around the fork:
/// - stdout and stderr are flushed first, or a half-written line in the buffer would be printed
///   by both processes;
/// - every signal is blocked across the fork, so none can run the parent's handler inside the
///   child before the child has reset it;
/// - in the child, signals that had a handler go back to their default action (as `execve`
///   would do; except the Rust runtime's SIGSEGV/SIGBUS stack-overflow reporter), ignored ones
///   stay ignored (SIGPIPE stays ignored, as the Rust runtime set it),
///   then the old signal mask is restored. A child of a server therefore dies of SIGTERM
///   instead of setting the parent's stop flag.
///
/// Fails without forking if this process has more than one thread (see the module docs).
pub fn fork_child(child: impl FnOnce() -> i32) -> io::Result<Pid> {
    let me = std::process::id() as i32;
    let threads = crate::procfs::stat(me)?.threads;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork: this process has {threads} threads, and a child of a \
             multi-threaded process may inherit a held lock"
        )));
    }
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();

    let old_mask = SigSet::all().thread_swap_mask(SigmaskHow::SIG_SETMASK)?;
    // SAFETY: the check above found exactly one thread, so no other thread can hold a lock
    // (allocator, stdio) that the child would inherit locked; the child may allocate. All
    // signals are blocked, so no handler runs in the child before `reset_caught_signals`.
    let forked = unsafe { nix::unistd::fork() };
    match forked {
        Ok(ForkResult::Parent { child }) => {
            old_mask.thread_set_mask()?;
            Ok(child)
        }
        Ok(ForkResult::Child) => {
            reset_caught_signals();
            SIGCHLD_SEEN.store(0, Ordering::SeqCst); // counts belong to the parent
            let _ = old_mask.thread_set_mask();
            // A panic must not unwind out of here into the parent's code path.
            let code = catch_unwind(AssertUnwindSafe(child)).unwrap_or(101);
            let _ = io::stdout().flush();
            let _ = io::stderr().flush();
            exit_now(code)
        }
        Err(e) => {
            let _ = old_mask.thread_set_mask();
            Err(e.into())
        }
    }
}

/// `_exit(2)`: ends this process at once, without atexit handlers or destructors. The way a
/// forked child leaves (the parent's exit work is the parent's).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit only ends the process; it touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// In a fresh child: every signal with a handler goes back to SIG_DFL; SIG_IGN stays.
fn reset_caught_signals() {
    for sig in Signal::iterator() {
        // SIGKILL and SIGSTOP cannot be caught; SIGSEGV and SIGBUS carry the Rust runtime's
        // stack-overflow report, which the child keeps.
        if matches!(
            sig,
            Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGSEGV | Signal::SIGBUS
        ) {
            continue;
        }
        let mut current: libc::sigaction = unsafe_zeroed_sigaction();
        // SAFETY: a null `act` only reads the current action into `current`, which is valid
        // writable memory of the right type.
        let read = unsafe { libc::sigaction(sig as i32, std::ptr::null(), &mut current) };
        let handler = current.sa_sigaction;
        if read == 0 && handler != libc::SIG_DFL && handler != libc::SIG_IGN {
            let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
            // SAFETY: SIG_DFL runs no code of ours.
            let _ = unsafe { signal::sigaction(sig, &default) };
        }
    }
}

fn unsafe_zeroed_sigaction() -> libc::sigaction {
    // SAFETY: libc::sigaction is a plain C struct for which all-zero bytes are a valid value
    // (handler SIG_DFL, empty mask, no flags).
    unsafe { std::mem::zeroed() }
}

/// `close(2)` on a descriptor a forked child inherited and does not need (a server's listener).
/// The value that owns the descriptor lives on in the parent; in the child its Drop never runs
/// (the child leaves through [`exit_now`]), so the number is closed exactly once here.
pub fn close_inherited(fd: &impl AsRawFd) {
    let _ = nix::unistd::close(fd.as_raw_fd());
}

/// How this process treats SIGCHLD, the signal the kernel sends when a child exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sigchld {
    /// SIG_DFL: nothing happens, and each exited child stays a zombie until `wait`ed for.
    Default,
    /// SIG_IGN: POSIX says the kernel reaps children itself; no zombies, and `wait` finds none.
    Ignore,
    /// A handler that counts deliveries ([`take_sigchld`]), with `SA_NOCLDWAIT`: the signal still
    /// comes, but the kernel reaps the children itself.
    CountNoCldWait,
    /// A handler that counts deliveries ([`take_sigchld`]). `restart: true` sets `SA_RESTART`
    /// (a blocking call the signal lands in is restarted by the kernel and never returns EINTR);
    /// `false` leaves it out (the call returns EINTR and the caller must retry).
    Count { restart: bool },
}

static SIGCHLD_SEEN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_sigchld(_signal: libc::c_int) {
    // An atomic add is async-signal-safe: no lock, no allocation.
    SIGCHLD_SEEN.fetch_add(1, Ordering::SeqCst);
}

/// How many SIGCHLD deliveries the counting handler saw since the last call. Standard signals
/// do not queue: children that exit while SIGCHLD is pending add nothing, so this counts
/// deliveries, not children.
pub fn take_sigchld() -> usize {
    SIGCHLD_SEEN.swap(0, Ordering::SeqCst)
}

/// Installs `how` for SIGCHLD: `rt_sigaction(SIGCHLD, ...)`.
pub fn set_sigchld(how: Sigchld) -> io::Result<()> {
    let (handler, flags) = match how {
        Sigchld::Default => (SigHandler::SigDfl, SaFlags::empty()),
        Sigchld::Ignore => (SigHandler::SigIgn, SaFlags::empty()),
        Sigchld::CountNoCldWait => (
            SigHandler::Handler(count_sigchld),
            SaFlags::SA_NOCLDWAIT | SaFlags::SA_RESTART,
        ),
        Sigchld::Count { restart: true } => {
            (SigHandler::Handler(count_sigchld), SaFlags::SA_RESTART)
        }
        Sigchld::Count { restart: false } => (SigHandler::Handler(count_sigchld), SaFlags::empty()),
    };
    let action = SigAction::new(handler, flags, SigSet::empty());
    // SAFETY: the only handler installed here, `count_sigchld`, does one atomic add, which is
    // async-signal-safe.
    unsafe { signal::sigaction(Signal::SIGCHLD, &action) }?;
    Ok(())
}

/// Keeps each signal's installed handler but clears its `SA_RESTART` flag, so a blocking call
/// (`accept4`, `read`) the signal lands in returns EINTR instead of being restarted by the
/// kernel. (This is what the old `siginterrupt(sig, 1)` did.)
pub fn interrupt_blocking_calls(signals: &[Signal]) -> io::Result<()> {
    for &sig in signals {
        let mut action = unsafe_zeroed_sigaction();
        // SAFETY: a null `act` only reads the current action into `action`.
        if unsafe { libc::sigaction(sig as i32, std::ptr::null(), &mut action) } != 0 {
            return Err(io::Error::last_os_error());
        }
        action.sa_flags &= !libc::SA_RESTART;
        // SAFETY: re-installs the handler that is already installed for this signal, with the
        // same mask and flags except SA_RESTART; nothing about what the handler may do changes.
        if unsafe { libc::sigaction(sig as i32, &action, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

static CONNECTION_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn shut_connection_down(_signal: libc::c_int) {
    let fd = CONNECTION_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: shutdown(2) is async-signal-safe (POSIX lists it); `fd` is the connection this
        // process registered, which stays open until the process exits.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}

/// For a forked child serving one connection with blocking calls: on SIGTERM or SIGINT,
/// `shutdown(fd, SHUT_RDWR)` the connection from inside the handler. The blocked `read` then
/// returns end of file (a blocked `write` fails with EPIPE), so the child leaves its loop and
/// finishes normally (reports, exits) instead of dying mid-call. Installed with SA_RESTART: the
/// shutdown, not EINTR, is what wakes the call.
///
/// `connection` must stay open until the process exits (a child that leaves by [`exit_now`]).
pub fn shutdown_on_stop_signals(connection: &impl AsRawFd) -> io::Result<()> {
    CONNECTION_FD.store(connection.as_raw_fd(), Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(shut_connection_down),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler makes one atomic load and one shutdown(2) call, both
        // async-signal-safe.
        unsafe { signal::sigaction(sig, &action) }?;
    }
    Ok(())
}

/// A process as /proc shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: i32,
    pub ppid: i32,
    /// `R`, `S`, ..., `Z` for a zombie.
    pub state: char,
}

/// The children of `parent`, zombies included, found by scanning `/proc/*/stat` for `ppid`.
/// (A process that exits during the scan is skipped.)
pub fn children_of(parent: i32) -> Vec<ProcEntry> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: Vec<ProcEntry> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = crate::procfs::stat(pid).ok()?;
            (stat.ppid == parent).then_some(ProcEntry {
                pid,
                ppid: stat.ppid,
                state: stat.state,
            })
        })
        .collect();
    children.sort_by_key(|c| c.pid);
    children
}

/// How many children of `parent` are zombies (state `Z`) right now.
pub fn zombies_of(parent: i32) -> usize {
    children_of(parent)
        .iter()
        .filter(|c| c.state == 'Z')
        .count()
}

/// The command name of `pid` (`/proc/PID/comm`), or `?` if it is gone.
pub fn command_name(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Calls `check` every few milliseconds until it returns true or `timeout` passes; returns the
/// last answer. For facts another process makes true soon (a child exits, a parent dies).
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_refuses_in_a_multithreaded_process() {
        // The test harness runs tests on threads, so this process has more than one.
        let _keep_a_second_thread =
            std::thread::spawn(|| std::thread::sleep(Duration::from_secs(1)));
        let err = fork_child(|| 0).unwrap_err();
        assert!(err.to_string().contains("refusing to fork"), "{err}");
    }

    #[test]
    fn this_process_is_a_child_of_its_parent() {
        let me = std::process::id() as i32;
        let parent = nix::unistd::getppid().as_raw();
        let siblings = children_of(parent);
        assert!(siblings.iter().any(|c| c.pid == me), "{siblings:?}");
    }
}
