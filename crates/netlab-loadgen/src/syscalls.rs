//! Syscalls per message, by name, from perf tracepoints (never strace: it stops the server at
//! every call and changes what it measures).
//!
//! `perf stat` is started during warmup with its counters disabled (`--delay=-1`) and driven
//! through a control FIFO: `enable` at the start of the measured window, `disable` at its end,
//! each acknowledged on a second FIFO. So the counts cover exactly the window the messages are
//! counted in, not perf's own start-up.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The syscalls worth naming for an echo server; every other one still counts in `total`.
pub const NAMED: &[&str] = &[
    "read",
    "write",
    "recvfrom",
    "sendto",
    "readv",
    "writev",
    "sendfile64",
    "select",
    "pselect6",
    "poll",
    "ppoll",
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "io_uring_enter",
    "accept4",
    "close",
    "futex",
];

/// Syscalls per message, or why there are none.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyscallReport {
    /// Why the figures are absent (perf missing, no permission, no tracepoints, ...).
    pub absent: Option<String>,
    /// All syscalls per message (raw_syscalls:sys_enter).
    pub total_per_msg: f64,
    /// Per message, by name, only those that occurred.
    pub per_msg: BTreeMap<String, f64>,
}

impl SyscallReport {
    pub fn absent(reason: impl Into<String>) -> SyscallReport {
        SyscallReport {
            absent: Some(reason.into()),
            ..Default::default()
        }
    }

    /// `4.0 (recvfrom 1.0, sendto 1.0, epoll_wait 1.0, ...)` or `absent: why`.
    pub fn summary(&self) -> String {
        if let Some(why) = &self.absent {
            return format!("absent: {why}");
        }
        let mut named: Vec<(&String, &f64)> = self.per_msg.iter().collect();
        named.sort_by(|a, b| b.1.total_cmp(a.1));
        let parts: Vec<String> = named
            .iter()
            .filter(|(_, v)| **v >= 0.005)
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        format!("{:.2} ({})", self.total_per_msg, parts.join(", "))
    }
}

/// A running `perf stat`, counters off until [`PerfCounter::enable`].
/// A `perf stat` attached to the server. Dropping it stops perf and removes its temp files.
pub struct PerfCounter {
    child: Child,
    /// False once `child` has been reaped: its pid must never be signalled again.
    running: bool,
    ctl: File,
    ack: File,
    dir: PathBuf,
    output: PathBuf,
}

impl PerfCounter {
    /// Starts perf on `pids` (the server's process tree) with its counters disabled.
    pub fn start(pids: &[i32]) -> Result<PerfCounter, String> {
        let perf = ["/usr/bin/perf", "/usr/local/bin/perf"]
            .iter()
            .find(|p| std::path::Path::new(p).exists())
            .map(PathBuf::from)
            .ok_or("perf not installed (apt-get install linux-perf)")?;
        let dir = std::env::temp_dir().join(format!(
            "loadgen-perf-{}-{}",
            std::process::id(),
            pids.first().copied().unwrap_or(0)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir: {e}"))?;
        let ctl_path = dir.join("ctl");
        let ack_path = dir.join("ack");
        for path in [&ctl_path, &ack_path] {
            nix::unistd::mkfifo(
                path,
                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            )
            .map_err(|e| format!("mkfifo: {e}"))?;
        }
        // O_RDWR on a FIFO never blocks in open(2) (Linux), so opening both before perf
        // exists cannot hang; and nothing is left running if it fails.
        let open = |path: &PathBuf| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| format!("open {}: {e}", path.display()))
        };
        let ctl = open(&ctl_path)?;
        let ack = open(&ack_path)?;
        let output = dir.join("counts.csv");
        let mut command = Command::new(perf);
        command
            .arg("stat")
            .arg("--delay=-1")
            .arg(format!(
                "--control=fifo:{},{}",
                ctl_path.display(),
                ack_path.display()
            ))
            .args(["-x", ","])
            .arg("-o")
            .arg(&output)
            .args(["-e", "raw_syscalls:sys_enter"]);
        for name in NAMED.iter().filter(|n| tracepoint_exists(n)) {
            command.args(["-e", &format!("syscalls:sys_enter_{name}")]);
        }
        let pid_list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        command
            .args(["-p", &pid_list.join(",")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run perf: {e}"))?;
        let mut counter = PerfCounter {
            child,
            running: true,
            ctl,
            ack,
            dir,
            output,
        };
        // perf needs a moment to attach; a failure (no tracepoints, no permission) shows here.
        std::thread::sleep(Duration::from_millis(150));
        if let Ok(Some(_)) = counter.child.try_wait() {
            counter.running = false;
            return Err(counter.failure());
        }
        Ok(counter)
    }

    fn failure(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        let line = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("perf exited")
            .trim()
            .to_string();
        format!("perf failed: {line}")
    }

    fn command(&mut self, word: &str) -> Result<(), String> {
        self.ctl
            .write_all(format!("{word}\n").as_bytes())
            .map_err(|e| format!("perf control: {e}"))?;
        // Wait (bounded) for "ack".
        let fd = self.ack.as_fd();
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(2000u16)) {
            Ok(n) if n > 0 => {
                let mut buf = [0u8; 16];
                let _ = self.ack.read(&mut buf);
                Ok(())
            }
            _ => Err(format!("perf did not acknowledge '{word}'")),
        }
    }

    pub fn enable(&mut self) -> Result<(), String> {
        self.command("enable")
    }

    pub fn disable(&mut self) -> Result<(), String> {
        self.command("disable")
    }

    /// Stops perf and turns its counts into per-message figures.
    pub fn finish(mut self, messages: u64) -> SyscallReport {
        parse_counts(&self.stop(), messages)
    }

    /// SIGINT makes perf write its counts and exit; returns them and removes the temp dir.
    fn stop(&mut self) -> String {
        if std::mem::replace(&mut self.running, false) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let _ = self.child.wait();
        }
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&self.dir);
        text
    }
}

impl Drop for PerfCounter {
    /// An early return (an error mid-run) must not leave perf attached to the server.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the kernel has the tracepoint `syscalls:sys_enter_NAME` (perf refuses the whole
/// command for one unknown event). When tracefs is not readable, assume it does.
fn tracepoint_exists(name: &str) -> bool {
    let roots = [
        "/sys/kernel/tracing/events/syscalls",
        "/sys/kernel/debug/tracing/events/syscalls",
    ];
    match roots.iter().find(|r| std::path::Path::new(r).is_dir()) {
        Some(root) => std::path::Path::new(root)
            .join(format!("sys_enter_{name}"))
            .exists(),
        None => true,
    }
}

/// Parses `perf stat -x,` output: `COUNT,UNIT,EVENT,...` per line.
pub fn parse_counts(text: &str, messages: u64) -> SyscallReport {
    let mut report = SyscallReport::default();
    let mut seen_total = false;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() < 3 {
            continue;
        }
        let event = fields[2];
        let count: Option<f64> = fields[0].parse().ok();
        if event == "raw_syscalls:sys_enter" {
            match count {
                Some(n) => {
                    report.total_per_msg = n / messages.max(1) as f64;
                    seen_total = true;
                }
                None => {
                    return SyscallReport::absent(format!("perf could not count: {}", fields[0]))
                }
            }
        } else if let (Some(name), Some(n)) = (event.strip_prefix("syscalls:sys_enter_"), count) {
            if n > 0.0 {
                report
                    .per_msg
                    .insert(name.to_string(), n / messages.max(1) as f64);
            }
        }
    }
    if !seen_total {
        return SyscallReport::absent("perf printed no counts (tracepoints unavailable?)");
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_csv() {
        let text = "# started on x\n\n400,,raw_syscalls:sys_enter,500,100.00,,\n100,,syscalls:sys_enter_epoll_wait,500,100.00,,\n0,,syscalls:sys_enter_poll,1,100.00,,\n";
        let r = parse_counts(text, 100);
        assert!(r.absent.is_none());
        assert_eq!(r.total_per_msg, 4.0);
        assert_eq!(r.per_msg.get("epoll_wait"), Some(&1.0));
        assert!(!r.per_msg.contains_key("poll"));
        let r = parse_counts("<not supported>,,raw_syscalls:sys_enter,0,0,,\n", 10);
        assert!(r.absent.is_some());
    }
}
