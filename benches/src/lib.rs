//! netlab-benches: Criterion benches, plus the one helper they share.
//!
//! | bench        | what one iteration is                                                   |
//! |--------------|-------------------------------------------------------------------------|
//! | `wait_calls` | one `select` / `poll` / `epoll_wait` over N watched sockets, one ready  |
//! | `echo_conn`  | a 512 B or 64 KiB echo through `EchoConn::read_once` + `write_once`     |
//! | `procfs`     | `procfs::stat` / `status` / `open_fds` of this process                  |
//!
//! Run them all with `cargo bench -p netlab-benches`; figures and method are in README.md.

use std::hint::black_box;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// The CPU time this thread has used so far: `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`.
pub fn thread_cpu_time() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("clock_gettime(CLOCK_THREAD_CPUTIME_ID)")
        .into()
}

/// Runs `routine` `iters` times and returns the CPU time this thread spent doing it: the body of
/// a Criterion `iter_custom`.
///
/// Why not the wall clock: this machine has 2 cores and other builds and load tests often run
/// beside the benches. Time spent descheduled is wall time but not CPU time, so CPU time keeps
/// the figures usable on a busy machine. It is the whole cost only because no routine here ever
/// sleeps: every wait call finds a ready fd and every read finds its bytes already sent.
pub fn cpu_time_of<T>(iters: u64, mut routine: impl FnMut() -> T) -> Duration {
    let start = thread_cpu_time();
    for _ in 0..iters {
        black_box(routine());
    }
    thread_cpu_time() - start
}
