//! What one /proc probe costs: `netlab_core::procfs::stat` (read and parse `/proc/PID/stat`),
//! `status` (`/proc/PID/status`), both together, and `open_fds` (list `/proc/PID/fd`), each on
//! this very process. The load generator takes these per process of the server's tree at every
//! sample (plus one `status` per thread), while it is also driving the load on the same 2 cores:
//! these figures say how much of its time sampling takes, and so how often it can sample without
//! becoming the thing it measures. Every read is real: the kernel formats the file anew on each
//! open. Times are this thread's CPU time (`netlab_benches::cpu_time_of`), so builds running
//! beside the bench do not inflate them.
//! Run it with `cargo bench -p netlab-benches --bench procfs`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use netlab_benches::cpu_time_of;
use netlab_core::procfs;

fn procfs_probes(c: &mut Criterion) {
    let pid = std::process::id() as i32;
    let mut group = c.benchmark_group("procfs");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));

    group.bench_function("stat", |b| {
        b.iter_custom(|iters| {
            cpu_time_of(iters, || {
                procfs::stat(black_box(pid)).expect("/proc/PID/stat")
            })
        })
    });
    group.bench_function("status", |b| {
        b.iter_custom(|iters| {
            cpu_time_of(iters, || {
                procfs::status(black_box(pid)).expect("/proc/PID/status")
            })
        })
    });
    group.bench_function("stat+status", |b| {
        b.iter_custom(|iters| {
            cpu_time_of(iters, || {
                let stat = procfs::stat(black_box(pid)).expect("/proc/PID/stat");
                let status = procfs::status(black_box(pid)).expect("/proc/PID/status");
                (stat, status)
            })
        })
    });
    group.bench_function("open_fds", |b| {
        b.iter_custom(|iters| {
            cpu_time_of(iters, || {
                procfs::open_fds(black_box(pid)).expect("/proc/PID/fd")
            })
        })
    });
    group.finish();
}

criterion_group!(benches, procfs_probes);
criterion_main!(benches);
