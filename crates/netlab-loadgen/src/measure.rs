//! Measuring one run: [`measure`] drives the engine while a sampler reads the server's /proc
//! (and perf, with `--syscalls`) at the edges of the measured window, then assembles the
//! [`RunReport`], with the client's own cost and the bottleneck verdict.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::cost::{self, Sample, ServerCost};
use crate::engine::{self, ClientCpu, Window};
use crate::environment::Environment;
use crate::report::{ChurnReport, ClientReport, Percentiles, RunReport, Status};
use crate::syscalls::{PerfCounter, SyscallReport};
use crate::target::Target;
use crate::workload::{BadArgument, Workload};

/// What to measure besides the engine's own figures.
pub struct MeasureOptions {
    pub label: String,
    pub server_pid: Option<i32>,
    pub syscalls: bool,
    pub environment: Environment,
}

/// Samples the server at the edges of the window.
struct Sampler {
    pid: Option<i32>,
    want_syscalls: bool,
    baseline: Option<Sample>,
    start: Option<(Instant, Sample)>,
    end: Option<(Instant, Sample)>,
    perf: Option<PerfCounter>,
    perf_problem: Option<String>,
}

impl Window for Sampler {
    fn connected(&mut self) {
        let Some(pid) = self.pid else { return };
        if self.want_syscalls {
            let pids = cost::settled_tree(pid, std::time::Duration::from_secs(2));
            match PerfCounter::start(&pids) {
                Ok(perf) => self.perf = Some(perf),
                Err(why) => self.perf_problem = Some(why),
            }
        }
    }

    fn measure_start(&mut self) {
        let Some(pid) = self.pid else { return };
        if let Some(perf) = self.perf.as_mut() {
            if let Err(why) = perf.enable() {
                self.perf_problem = Some(why);
            }
        }
        self.start = cost::sample(pid).map(|s| (Instant::now(), s));
    }

    fn measure_end(&mut self) {
        let Some(pid) = self.pid else { return };
        if let Some(perf) = self.perf.as_mut() {
            if let Err(why) = perf.disable() {
                self.perf_problem = Some(why);
            }
        }
        self.end = cost::sample(pid).map(|s| (Instant::now(), s));
    }
}

/// Whether a pid holds the target's listening socket.
#[derive(Debug, PartialEq, Eq)]
enum Listener {
    /// The pid has a descriptor on it.
    Held,
    /// Something listens on the target, but not this pid's tree.
    Elsewhere { inodes: Vec<u64> },
    /// Nothing listens there, or the tables cannot be read: the run itself will tell.
    Unknown,
}

/// Looks the target's listening socket up in the pid's network namespace (/proc/PID/net/tcp,
/// tcp6 or unix: state LISTEN, the target's port or path) and then in the pid's fd table
/// (`/proc/PID/fd/N -> socket:[INODE]`).
fn listener_of(pid: i32, target: &Target) -> Listener {
    let mut inodes: Vec<u64> = Vec::new();
    match target {
        Target::Tcp(addr) => {
            for table in ["tcp", "tcp6"] {
                let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
                    continue;
                };
                for line in text.lines().skip(1) {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    let port = f
                        .get(1)
                        .and_then(|a| a.rsplit_once(':'))
                        .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                    if f.get(3) == Some(&"0A") && port == Some(addr.port()) {
                        inodes.extend(f.get(9).and_then(|i| i.parse::<u64>().ok()));
                    }
                }
            }
        }
        Target::Unix(path) => {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/unix")) else {
                return Listener::Unknown;
            };
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                // Flags 00010000 is __SO_ACCEPTCON: a listening socket.
                if f.get(3) == Some(&"00010000") && f.get(7).map(Path::new) == Some(path.as_path())
                {
                    inodes.extend(f.get(6).and_then(|i| i.parse::<u64>().ok()));
                }
            }
        }
    }
    inodes.retain(|i| *i != 0);
    if inodes.is_empty() {
        return Listener::Unknown;
    }
    // The pid itself, not its tree: every tree is a subtree of pid 1's, and a server's own
    // process holds its listener (a forking server's children hold copies).
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Listener::Unknown;
    };
    {
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            let inode = link
                .strip_prefix("socket:[")
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|i| i.parse::<u64>().ok());
            if inode.is_some_and(|i| inodes.contains(&i)) {
                return Listener::Held;
            }
        }
    }
    Listener::Elsewhere { inodes }
}

/// Runs the engine on `workload` and assembles the report.
pub fn measure(workload: &Workload, options: MeasureOptions) -> anyhow::Result<RunReport> {
    let mut sampler = Sampler {
        pid: options.server_pid,
        want_syscalls: options.syscalls,
        baseline: options.server_pid.and_then(cost::sample),
        start: None,
        end: None,
        perf: None,
        perf_problem: None,
    };
    if let Some(pid) = options.server_pid {
        if sampler.baseline.is_none() {
            anyhow::bail!("no process {pid} (--server-pid): cannot read /proc/{pid}");
        }
        if let Listener::Elsewhere { inodes } = listener_of(pid, &workload.target) {
            return Err(BadArgument(format!(
                "--server-pid {pid} is not the server on {}: it holds no descriptor on the listening socket (inode {}); give the pid the server printed",
                workload.target,
                inodes.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
    }
    let time_wait_before = workload.churn.then(|| time_wait_by_side(&workload.target));
    let result = engine::run(workload, &mut sampler).context("load run failed")?;
    let churn = time_wait_before.map(|before| {
        let left = match (before, time_wait_by_side(&workload.target)) {
            (Some(b), Some(a)) => (Some(a.0.saturating_sub(b.0)), Some(a.1.saturating_sub(b.1))),
            _ => (None, None),
        };
        ChurnReport {
            completed: result.connections_completed,
            time_wait_client: left.0,
            time_wait_server: left.1,
        }
    });
    let window_s = workload.duration.as_secs_f64();
    let messages = result.messages;

    let server = match (&sampler.start, &sampler.end, options.server_pid) {
        (Some((t0, s0)), Some((t1, s1)), Some(pid)) => Some(ServerCost::between(
            pid,
            sampler.baseline.as_ref(),
            s0,
            s1,
            &cost::Work {
                window_s: (*t1 - *t0).as_secs_f64(),
                messages,
                bytes: result.bytes,
                connections: result.connected,
            },
        )),
        _ => None,
    };
    let syscalls = if !options.syscalls {
        SyscallReport::absent("not requested (--syscalls)")
    } else if options.server_pid.is_none() {
        SyscallReport::absent("server pid unknown (--server-pid)")
    } else if let Some(why) = sampler.perf_problem.take() {
        SyscallReport::absent(why) // dropping the sampler stops perf
    } else {
        match sampler.perf.take() {
            Some(perf) => perf.finish(messages),
            None => SyscallReport::absent("perf did not start"),
        }
    };

    let client = client_report(workload, &result.client_cpu, messages, server.as_ref());
    let status = if result.errors.total() > 0 {
        Status::Errors
    } else {
        Status::Ok
    };
    Ok(RunReport {
        model: options.label,
        target: workload.target.to_string(),
        status,
        note: None,
        environment: options.environment,
        workload: workload.clone(),
        window_s,
        messages,
        msgs_per_s: messages as f64 / window_s,
        mb_per_s: result.bytes as f64 / window_s / 1e6,
        latency: Percentiles::of(&result.latency),
        latency_uncorrected: result.latency_uncorrected.as_ref().map(Percentiles::of),
        connect: Percentiles::of(&result.connect),
        connected: result.connected,
        errors: result.errors,
        error_examples: result.examples,
        client,
        server,
        server_stopped: None,
        syscalls,
        rounds: None,
        churn,
    })
}

/// TIME_WAIT sockets of a TCP target's connections, (client side, server side): those whose
/// remote port is the server's, and those whose local port is. `None` for a Unix socket (no
/// TIME_WAIT) or when /proc/net/tcp cannot be read.
fn time_wait_by_side(target: &Target) -> Option<(u64, u64)> {
    let Target::Tcp(server) = target else {
        return None;
    };
    let sockets = netlab_core::netns::tcp_sockets().ok()?;
    let waiting = sockets
        .iter()
        .filter(|s| s.state == netlab_core::netns::TcpState::TimeWait);
    let (mut client, mut server_side) = (0, 0);
    for s in waiting {
        if s.remote.port() == server.port() && s.remote.ip() == server.ip() {
            client += 1;
        } else if s.local.port() == server.port() {
            server_side += 1;
        }
    }
    Some((client, server_side))
}

/// Client CPU per message and the bottleneck verdict.
fn client_report(
    workload: &Workload,
    cpu: &ClientCpu,
    messages: u64,
    server: Option<&ServerCost>,
) -> ClientReport {
    let busiest = cpu.thread_busy.iter().copied().fold(0.0, f64::max);
    let client_saturated = busiest >= 0.90;
    // A server that used nearly a whole core per thread it could run on is saturated; on this
    // scale a thread-per-connection server pinned to one core also counts as one core.
    let server_saturated = server.is_some_and(|s| s.cpu_busy >= 0.90);
    let bound = match (client_saturated, server.is_some(), server_saturated) {
        (true, true, true) => "both",
        (true, _, false) => "client",
        (false, true, true) => "server",
        (false, true, false) => "neither",
        (false, false, _) => "unknown",
        (true, false, _) => "client",
    };
    let warning = client_saturated.then(|| {
        format!(
            "client-bound: a loadgen thread used {:.0}% of its core, so msg/s measures the \
             client as much as the server; compare server CPU per message instead, or give the \
             client more threads (-t) and cores",
            busiest * 100.0
        )
    });
    ClientReport {
        threads: cpu.thread_busy.len(),
        cpu_user_s: cpu.user_s,
        cpu_system_s: cpu.system_s,
        cpu_us_per_msg: if messages > 0 {
            (cpu.user_s + cpu.system_s) * 1e6 / messages as f64
        } else {
            0.0
        },
        busiest_thread: busiest,
        bound: if workload.connections > 0 {
            bound.into()
        } else {
            "unknown".into()
        },
        warning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(busy: f64) -> ClientCpu {
        ClientCpu {
            user_s: 0.5,
            system_s: 0.5,
            thread_busy: vec![0.2, busy],
        }
    }

    fn server(busy: f64) -> ServerCost {
        ServerCost {
            cpu_busy: busy,
            ..ServerCost::default()
        }
    }

    #[test]
    fn the_listener_is_found_in_its_holders_fd_table() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target::Tcp(listener.local_addr().unwrap());
        let me = std::process::id() as i32;
        assert_eq!(listener_of(me, &target), Listener::Held);
        // pid 1 (init, or the container's first process) does not hold this test's socket.
        assert!(matches!(
            listener_of(1, &target),
            Listener::Elsewhere { .. }
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sock");
        let _unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(listener_of(me, &Target::Unix(path)), Listener::Held);
        drop(listener);
    }

    #[test]
    fn the_bottleneck_verdict() {
        let w = Workload::echo(crate::Target::Unix("/x".into()));
        let r = client_report(&w, &cpu(0.97), 1_000_000, Some(&server(0.5)));
        assert_eq!(r.bound, "client");
        assert!(r.warning.unwrap().starts_with("client-bound"));
        assert_eq!(r.cpu_us_per_msg, 1.0);
        assert_eq!(r.busiest_thread, 0.97);
        let r = client_report(&w, &cpu(0.5), 1_000_000, Some(&server(0.99)));
        assert_eq!((r.bound.as_str(), r.warning.is_none()), ("server", true));
        assert_eq!(
            client_report(&w, &cpu(0.95), 1, Some(&server(0.95))).bound,
            "both"
        );
        assert_eq!(
            client_report(&w, &cpu(0.3), 1, Some(&server(0.3))).bound,
            "neither"
        );
        assert_eq!(client_report(&w, &cpu(0.3), 1, None).bound, "unknown");
    }
}
