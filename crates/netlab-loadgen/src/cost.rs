//! What the server cost over the measured window, read from /proc (netlab_core::procfs).
//!
//! The sample covers the server's whole process tree: every thread of the server (a
//! thread-per-connection server has one per client) and every descendant process (a forking
//! server has one per client). Two facts bite:
//!
//! - `/proc/PID/status` counts context switches of one thread only, so they are summed over
//!   `/proc/PID/task/*`; a thread or child that ends inside the window takes its counts with it.
//! - /proc/PID/stat counts CPU in clock ticks (10 ms at 100 Hz), and a thread's ticks are
//!   charged to its process only as they fall. /proc/TID/schedstat has nanoseconds per thread,
//!   so the total comes from there (each thread's own growth over the window), with the ticks
//!   as a floor for threads that exited inside the window, and for the user/system split.

use std::collections::{BTreeSet, HashMap};

use netlab_core::procfs;
use serde::{Deserialize, Deserializer, Serialize};

/// One look at the server's process tree.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub processes: usize,
    pub threads: u64,
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    /// CPU time in ns from /proc/TID/schedstat, per thread (tids are unique across the whole
    /// tree); `None` when the kernel has no schedstat.
    pub cpu_ns: Option<HashMap<i32, u64>>,
    pub voluntary_cs: u64,
    pub involuntary_cs: u64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub vm_size_kib: u64,
    pub open_fds: usize,
    pub pids: Vec<i32>,
}

/// The server pid and its descendants, parents first.
pub fn process_tree(pid: i32) -> Vec<i32> {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        i += 1;
        // /proc/PID/task/TID/children lists the children each thread forked.
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path().join("children");
            if let Ok(text) = std::fs::read_to_string(path) {
                tree.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    let mut seen = BTreeSet::new();
    tree.retain(|p| seen.insert(*p));
    tree
}

/// Reads every process of the tree rooted at `pid`. `None` if the server itself is gone.
pub fn sample(pid: i32) -> Option<Sample> {
    procfs::stat(pid).ok()?;
    let mut total = Sample {
        // None when this kernel has no schedstat at all; then only clock ticks are counted.
        cpu_ns: schedstat_ns(std::process::id() as i32).map(|_| HashMap::new()),
        ..Sample::default()
    };
    for p in process_tree(pid) {
        let Ok(stat) = procfs::stat(p) else { continue };
        if stat.state == 'Z' {
            continue;
        }
        total.processes += 1;
        total.pids.push(p);
        total.threads += stat.threads;
        total.utime_ticks += stat.utime_ticks;
        total.stime_ticks += stat.stime_ticks;
        if let Ok(status) = procfs::status(p) {
            total.rss_kib += status.vm_rss_kib;
            total.hwm_kib += status.vm_hwm_kib;
            total.vm_size_kib += status.vm_size_kib;
        }
        total.open_fds += procfs::open_fds(p).unwrap_or(0);
        // Context switches are per thread: sum the tasks.
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                let Some(tid) = task
                    .file_name()
                    .to_str()
                    .and_then(|t| t.parse::<i32>().ok())
                else {
                    continue;
                };
                if let Ok(status) = procfs::status(tid) {
                    total.voluntary_cs += status.voluntary_ctxt_switches;
                    total.involuntary_cs += status.nonvoluntary_ctxt_switches;
                }
                // A thread that exits between read_dir and here is simply not counted (its
                // process's ticks still are: see ServerCost::between).
                if let (Some(threads), Some(ns)) = (total.cpu_ns.as_mut(), schedstat_ns(tid)) {
                    threads.insert(tid, ns);
                }
            }
        }
    }
    Some(total)
}

/// Time the thread has run, in ns: the first field of `/proc/TID/schedstat` (the scheduler's
/// `sum_exec_runtime`). Read locally: netlab_core::procfs has no schedstat probe.
pub fn schedstat_ns(tid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{tid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Waits (at most `limit`) until the server's process tree stops growing, e.g. a forking
/// server that has not forked for every accepted connection yet. Returns the tree.
pub fn settled_tree(pid: i32, limit: std::time::Duration) -> Vec<i32> {
    let deadline = std::time::Instant::now() + limit;
    let mut tree = process_tree(pid);
    let mut same = 0;
    while same < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(30));
        let next = process_tree(pid);
        same = if next.len() == tree.len() {
            same + 1
        } else {
            0
        };
        tree = next;
    }
    tree
}

/// What the server did over the window.
#[derive(Debug, Clone, Copy)]
pub struct Work {
    pub window_s: f64,
    pub messages: u64,
    pub bytes: u64,
    /// Connections open (active and idle).
    pub connections: usize,
}

/// The server's cost over the window, per message and in total.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerCost {
    pub pid: i32,
    /// Processes in the server's tree at the end of the window (forking servers: one per client).
    pub processes: usize,
    pub threads: u64,
    pub open_fds: usize,
    /// User and system CPU: NaN (null in JSON) when no clock tick fell in the window to split
    /// the total by.
    #[serde(deserialize_with = "null_as_nan")]
    pub cpu_user_s: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub cpu_system_s: f64,
    /// Server CPU over the window as a share of one core.
    pub cpu_busy: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub cpu_user_us_per_msg: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub cpu_system_us_per_msg: f64,
    pub cpu_us_per_msg: f64,
    /// The resolution of the per-message CPU figures: one clock tick (or 1 ns with schedstat)
    /// divided by the messages.
    pub cpu_resolution_us_per_msg: f64,
    /// `schedstat` (total in ns; user/system split by the tick ratio) or `ticks` (10 ms).
    pub cpu_source: String,
    /// CPU milliseconds per GiB moved (useful for the HTTP mode).
    pub cpu_ms_per_gib: f64,
    pub voluntary_cs_per_msg: f64,
    pub involuntary_cs_per_msg: f64,
    pub rss_kib: u64,
    /// Peak RSS (VmHWM), summed over the tree.
    pub peak_rss_kib: u64,
    /// (RSS at the end of the window - RSS before any connection) / connections.
    pub rss_kib_per_conn: f64,
    /// Virtual size (VmSize) at the end of the window, summed over the tree.
    #[serde(default)]
    pub vm_size_kib: u64,
    /// (VmSize at the end - VmSize before any connection) / connections: what each connection
    /// reserved, touched or not (a thread's whole stack); RSS/conn is what it touched.
    #[serde(default)]
    pub vm_size_kib_per_conn: f64,
}

impl ServerCost {
    /// Cost between two samples, for the work done in between.
    pub fn between(
        pid: i32,
        before_connections: Option<&Sample>,
        start: &Sample,
        end: &Sample,
        work: &Work,
    ) -> ServerCost {
        let Work {
            window_s,
            messages,
            bytes,
            connections,
        } = *work;
        let hz = procfs::clock_ticks_per_second() as f64;
        let tick_user_s = end.utime_ticks.saturating_sub(start.utime_ticks) as f64 / hz;
        let tick_system_s = end.stime_ticks.saturating_sub(start.stime_ticks) as f64 / hz;
        // The total from schedstat (ns, per thread) when there is one: clock ticks are charged
        // per process and truncated, so 50 forked children of 5 ms each would add up to 0.
        // Each thread alive at the end counts its own growth (all of it if it was born in the
        // window). A thread that exited in the window took its schedstat with it, but its
        // process's ticks still include it: the tick total is the floor. The user/system split
        // still comes from the ticks; when no tick fell in the window it is unknown (NaN, null
        // in JSON), not "all system".
        let ticks = tick_user_s + tick_system_s;
        let (total_s, precise) = match (&start.cpu_ns, &end.cpu_ns) {
            (Some(a), Some(b)) => {
                let grown_ns: u64 = b
                    .iter()
                    .map(|(tid, ns)| ns.saturating_sub(a.get(tid).copied().unwrap_or(0)))
                    .sum();
                ((grown_ns as f64 / 1e9).max(ticks), true)
            }
            _ => (ticks, false),
        };
        let (user_s, system_s) = if ticks > 0.0 {
            (
                total_s * tick_user_s / ticks,
                total_s * tick_system_s / ticks,
            )
        } else if total_s == 0.0 {
            (0.0, 0.0)
        } else {
            (f64::NAN, f64::NAN)
        };
        let per = |x: f64| {
            if messages > 0 {
                x / messages as f64
            } else {
                0.0
            }
        };
        let gib = bytes as f64 / (1u64 << 30) as f64;
        let baseline = before_connections.map_or(0, |s| s.rss_kib);
        let vm_baseline = before_connections.map_or(0, |s| s.vm_size_kib);
        ServerCost {
            pid,
            processes: end.processes,
            threads: end.threads,
            open_fds: end.open_fds,
            cpu_user_s: user_s,
            cpu_system_s: system_s,
            cpu_busy: total_s / window_s.max(1e-9),
            cpu_user_us_per_msg: per(user_s * 1e6),
            cpu_system_us_per_msg: per(system_s * 1e6),
            cpu_us_per_msg: per(total_s * 1e6),
            cpu_resolution_us_per_msg: if precise { per(1e-3) } else { per(1e6 / hz) },
            cpu_source: if precise {
                "schedstat".into()
            } else {
                "ticks".into()
            },
            cpu_ms_per_gib: if gib > 0.0 { total_s * 1e3 / gib } else { 0.0 },
            voluntary_cs_per_msg: per(end.voluntary_cs.saturating_sub(start.voluntary_cs) as f64),
            involuntary_cs_per_msg: per(
                end.involuntary_cs.saturating_sub(start.involuntary_cs) as f64
            ),
            rss_kib: end.rss_kib,
            peak_rss_kib: end.hwm_kib,
            rss_kib_per_conn: if connections > 0 {
                end.rss_kib.saturating_sub(baseline) as f64 / connections as f64
            } else {
                0.0
            },
            vm_size_kib: end.vm_size_kib,
            vm_size_kib_per_conn: if connections > 0 {
                end.vm_size_kib.saturating_sub(vm_baseline) as f64 / connections as f64
            } else {
                0.0
            },
        }
    }
}

/// serde_json writes a NaN as `null`; this reads `null` back as NaN, so a report with an unknown
/// user/system split reads back as it was written.
fn null_as_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process_and_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let tree = process_tree(me);
        assert_eq!(tree[0], me);
        assert!(tree.contains(&(child.id() as i32)));
        let s = sample(me).unwrap();
        assert!(s.processes >= 2 && s.threads >= 2 && s.open_fds > 0 && s.rss_kib > 0);
        assert!(
            s.vm_size_kib > s.rss_kib,
            "{} vs {}",
            s.vm_size_kib,
            s.rss_kib
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn an_unknown_split_reads_back_from_json() {
        let cost = ServerCost {
            cpu_user_s: f64::NAN,
            cpu_system_s: f64::NAN,
            cpu_user_us_per_msg: f64::NAN,
            cpu_system_us_per_msg: f64::NAN,
            cpu_us_per_msg: 4.5,
            ..ServerCost::default()
        };
        let json = serde_json::to_string(&cost).unwrap();
        assert!(json.contains("\"cpu_user_s\":null"), "{json}");
        let back: ServerCost = serde_json::from_str(&json).unwrap();
        assert!(back.cpu_user_s.is_nan() && back.cpu_system_us_per_msg.is_nan());
        assert_eq!(back.cpu_us_per_msg, 4.5);
    }
}
