//! Signals a server reacts to, delivered two ways at once: a flag to test, and a byte written to
//! a socketpair used as a self-pipe (the self-pipe trick), whose read end a
//! `select`/`poll`/`epoll` loop watches like any socket. In strace the handler's byte is
//! `sendto(7, "X", 1, MSG_DONTWAIT, ...)` and the loop drains it with `recvfrom(4, ...)`.
//!
//! - SIGINT, SIGTERM: stop ([`Signals::stop_requested`]).
//! - SIGUSR1: print the counters so far ([`Signals::take_report`]).
//!
//! Kernel facts that bite here: signal-hook installs handlers with SA_RESTART, so a blocking
//! `read`/`accept` is restarted after the handler runs and does not notice the signal; but
//! `select`, `poll` and `epoll_wait` are never restarted: they return EINTR, and a loop must
//! retry them. A signal that lands between "check the flag" and "enter the wait" would be
//! missed by a flag alone; the byte makes the wait return at once instead.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

pub struct Signals {
    wake_read: UnixStream,
    // Kept open so the handler always has somewhere to write.
    _wake_write: UnixStream,
    stop: Arc<AtomicBool>,
    report: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers (`rt_sigaction` for SIGINT, SIGTERM, SIGUSR1) and creates the
    /// socketpair that serves as the self-pipe.
    pub fn install() -> io::Result<Signals> {
        let (wake_read, wake_write) = UnixStream::pair()?;
        wake_read.set_nonblocking(true)?;
        wake_write.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(AtomicBool::new(false));
        // Flags first: signal-hook runs a signal's actions in the order they were registered,
        // so the flag is set before the byte that wakes the loop is written.
        for signal in [SIGINT, SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&stop))?;
        }
        signal_hook::flag::register(SIGUSR1, Arc::clone(&report))?;
        for signal in [SIGINT, SIGTERM, SIGUSR1] {
            signal_hook::low_level::pipe::register(signal, wake_write.try_clone()?)?;
        }
        Ok(Signals {
            wake_read,
            _wake_write: wake_write,
            stop,
            report,
        })
    }

    /// The self-pipe's read end: readable after any of the signals arrived. Add it to the wait set,
    /// and call [`drain`](Self::drain) when it fires.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_read.as_fd()
    }

    /// Empties the self-pipe so a level-triggered wait stops reporting it.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.wake_read).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Blocks until one of the signals arrives (for a thread that only watches for signals).
    pub fn wait(&self) {
        let mut fds = [nix::poll::PollFd::new(
            self.wake_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        while !matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE), Ok(n) if n > 0) {}
        self.drain();
    }

    /// Was SIGINT or SIGTERM received?
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Was SIGUSR1 received since the last call?
    pub fn take_report(&self) -> bool {
        self.report.swap(false, Ordering::SeqCst)
    }
}
