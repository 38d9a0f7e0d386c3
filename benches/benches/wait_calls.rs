//! The cost of ONE wait call, `select`, `poll` or `epoll_wait`, when N sockets are watched for
//! reading and exactly one of them is ready, for N = 1, 10, 100, 1000. This is the lab's central
//! fact made into numbers: `select` and `poll` hand the kernel the whole set on every call and the
//! kernel asks every socket "are you ready?", so their cost grows with N even though only one
//! socket has anything to say; `epoll` keeps the interest list in the kernel and a ready list, so
//! `epoll_wait` costs the ready sockets, not the watched ones. Sockets are `UnixStream::pair()`
//! ends (no TCP: a Unix socket's poll callback is cheaper than TCP's, so the per-fd slope here is
//! a lower bound for TCP servers). Times are this thread's CPU time
//! (`netlab_benches::cpu_time_of`), so builds running beside the bench do not inflate them. Run it
//! with `cargo bench -p netlab-benches --bench wait_calls`.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use netlab_benches::cpu_time_of;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::select::{select, FdSet, FD_SETSIZE};
use nix::sys::time::TimeVal;

/// Watched-socket counts. `select` cannot watch an fd >= FD_SETSIZE (1024), so the largest set
/// stops at 1000 and every watched fd of this process stays below 1024.
const WATCHED: [usize; 4] = [1, 10, 100, 1000];

/// A timeout none of the calls should ever reach (one socket is always ready); it is only there
/// so a broken setup fails loudly instead of hanging the bench.
/// (A whole number of seconds: select's `tv_usec` must stay below 1_000_000.)
const TIMEOUT_MS: u16 = 1000;

fn wait_calls(c: &mut Criterion) {
    raise_fd_limit();
    let mut group = c.benchmark_group("wait_calls");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));

    for n in WATCHED {
        let sockets = Sockets::new(n, ReadyAt::Last);
        bench_select(&mut group, "select", &sockets);
        bench_poll(&mut group, "poll", &sockets);
        bench_epoll_wait(&mut group, "epoll_wait", &sockets);
    }

    // The same 1000 sockets with the ready one first: select and poll still check every fd,
    // but stop hanging wait-queue entries once they have found a ready one. The gap to the
    // runs above is that bookkeeping; what is left is the bare per-fd check.
    let sockets = Sockets::new(1000, ReadyAt::First);
    bench_select(&mut group, "select_ready_first", &sockets);
    bench_poll(&mut group, "poll_ready_first", &sockets);
    group.finish();
}

fn bench_select(group: &mut BenchmarkGroup<WallTime>, name: &str, sockets: &Sockets) {
    let watched = sockets.watched();
    // nfds: the highest fd plus one, kept up to date by the loop as it accepts, as a C server
    // keeps `maxfd`. (nix's `select(None, ...)` would find it with `FdSet::highest`, which tests
    // the bits one by one from fd 1023 down: a user-space scan that is most of the cost of a
    // select over a few low fds.)
    let nfds = sockets.highest_fd() + 1;
    group.bench_with_input(
        BenchmarkId::new(name, watched.len()),
        watched,
        |b, watched| {
            b.iter_custom(|iters| {
                cpu_time_of(iters, || {
                    // select() overwrites the set with its answer: a real loop rebuilds it every
                    // turn, so the rebuild is part of the cost.
                    let mut readable = FdSet::new();
                    for socket in watched {
                        readable.insert(socket.as_fd());
                    }
                    // Linux writes the time left back into the timeout: reset it too.
                    let mut timeout = TimeVal::new(i64::from(TIMEOUT_MS / 1000), 0);
                    let ready =
                        select(nfds, &mut readable, None, None, &mut timeout).expect("select");
                    assert_eq!(ready, 1, "exactly one socket has a byte to read");
                    ready
                })
            })
        },
    );
}

fn bench_poll(group: &mut BenchmarkGroup<WallTime>, name: &str, sockets: &Sockets) {
    let watched = sockets.watched();
    group.bench_with_input(
        BenchmarkId::new(name, watched.len()),
        watched,
        |b, watched| {
            // poll() reads `events` and writes `revents`, so the same array goes in every call,
            // but all of it: the kernel copies and checks every entry.
            let mut fds: Vec<PollFd> = watched
                .iter()
                .map(|socket| PollFd::new(socket.as_fd(), PollFlags::POLLIN))
                .collect();
            b.iter_custom(|iters| {
                cpu_time_of(iters, || {
                    let ready = poll(&mut fds, PollTimeout::from(TIMEOUT_MS)).expect("poll");
                    assert_eq!(ready, 1, "exactly one socket has a byte to read");
                    ready
                })
            })
        },
    );
}

fn bench_epoll_wait(group: &mut BenchmarkGroup<WallTime>, name: &str, sockets: &Sockets) {
    let watched = sockets.watched();
    group.bench_with_input(
        BenchmarkId::new(name, watched.len()),
        watched,
        |b, watched| {
            // Registered once, outside the timed loop, as a server does at accept time. The
            // epoll fd is created here, after the sockets, so it never counts towards select.
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1");
            for socket in watched {
                let fd = socket.as_raw_fd() as u64;
                epoll
                    .add(socket, EpollEvent::new(EpollFlags::EPOLLIN, fd))
                    .expect("epoll_ctl(EPOLL_CTL_ADD)");
            }
            // Room for a few events: the call returns as many as are ready (one), not N.
            let mut events = [EpollEvent::empty(); 8];
            b.iter_custom(|iters| {
                cpu_time_of(iters, || {
                    let ready = epoll
                        .wait(&mut events, EpollTimeout::from(TIMEOUT_MS))
                        .expect("epoll_wait");
                    // Level-triggered: the unread byte puts the socket back on the ready list
                    // after every report, so every call finds it.
                    assert_eq!(ready, 1, "exactly one socket has a byte to read");
                    ready
                })
            })
        },
    );
}

/// Where the one ready socket sits among the watched ones (fd order is the order select and
/// poll check them in).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadyAt {
    First,
    Last,
}

/// N watched sockets: the ends of ceil(N/2) Unix socket pairs, taken in creation order. Both
/// ends of an idle pair are idle for reading (nothing was written either way), so the watched
/// fds are numbered densely from the lowest free fd up, which keeps 1000 of them below 1024.
struct Sockets {
    /// Every end, watched or not, in creation (and so fd) order; the first `watched` are watched.
    ends: Vec<UnixStream>,
    watched: usize,
}

impl Sockets {
    fn new(watched: usize, ready_at: ReadyAt) -> Sockets {
        let mut ends = Vec::with_capacity(watched + 1);
        while ends.len() < watched {
            let (a, b) = UnixStream::pair().expect("socketpair");
            ends.push(a);
            ends.push(b);
        }
        // Normally the ready socket is the last watched one, with the highest fd: select and
        // poll check the fds in order, and until they meet a ready one they also hang a
        // wait-queue entry on each socket (in case they have to sleep), so this is the full
        // price of a wake-up when most connections are idle. One byte is written to its peer
        // and never read, so it stays readable (level-triggered) for every call.
        let ready = match ready_at {
            ReadyAt::First => 0,
            ReadyAt::Last => watched - 1,
        };
        let peer = ready ^ 1; // a pair's ends sit at 2k and 2k + 1
        (&ends[peer]).write_all(b"x").expect("write the ready byte");

        let fds: Vec<i32> = ends[..watched].iter().map(|s| s.as_raw_fd()).collect();
        assert!(
            fds.windows(2).all(|w| w[0] < w[1]),
            "fds were not handed out in increasing order"
        );
        let highest = fds[watched - 1];
        assert!(
            (highest as usize) < FD_SETSIZE,
            "fd {highest} is beyond FD_SETSIZE ({FD_SETSIZE}): select cannot watch it"
        );
        Sockets { ends, watched }
    }

    fn watched(&self) -> &[UnixStream] {
        &self.ends[..self.watched]
    }

    /// The highest watched fd (the watched ends were created in increasing fd order).
    fn highest_fd(&self) -> i32 {
        self.ends[self.watched - 1].as_raw_fd()
    }
}

/// 1000 watched sockets need ~1000 fds plus their peers; the default soft RLIMIT_NOFILE is often
/// 1024. Raising the soft limit up to the hard limit needs no privilege.
fn raise_fd_limit() {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit(RLIMIT_NOFILE)");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit(RLIMIT_NOFILE)");
    }
}

criterion_group!(benches, wait_calls);
criterion_main!(benches);
