//! The echo servers as processes: where their binaries are (building them when run from the
//! workspace), starting one on a free port pinned to a core, reading its "listening" line, and
//! stopping it with SIGTERM and checking its "stopped" line and exit status.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::target::Target;

/// One echo server model: its binary and the flags that select the variant we compare.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    pub name: &'static str,
    pub bin: &'static str,
    pub args: &'static [&'static str],
    /// Pinned to the server's core like the others; `false` for a server whose point is to
    /// use several cores (reuseport), which then runs wherever the kernel puts its threads.
    pub one_core: bool,
}

/// The start of the error [`RunningServer::start`] returns for a server that exited with
/// status 69 (EX_UNAVAILABLE) before listening: a model this build could not make (echo-c
/// without a C compiler prints `echo-c: not built: REASON`).
pub const NOT_BUILT: &str = "not built: ";

/// Every echo server model, in lab order (the forking server last: the heaviest). tokio runs
/// its default current-thread runtime, reuseport its default loop per online core.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "blocking",
        bin: "echo-blocking",
        args: &["--mode", "threads"],
        one_core: true,
    },
    ModelSpec {
        name: "select",
        bin: "echo-select",
        args: &[],
        one_core: true,
    },
    ModelSpec {
        name: "poll",
        bin: "echo-poll",
        args: &[],
        one_core: true,
    },
    ModelSpec {
        name: "epoll-lt",
        bin: "echo-epoll-lt",
        args: &[],
        one_core: true,
    },
    ModelSpec {
        name: "epoll-et",
        bin: "echo-epoll-et",
        args: &[],
        one_core: true,
    },
    ModelSpec {
        name: "mio",
        bin: "echo-mio",
        args: &[],
        one_core: true,
    },
    ModelSpec {
        name: "uring",
        bin: "echo-uring",
        args: &[],
        one_core: true,
    },
    ModelSpec {
        name: "tokio",
        bin: "echo-tokio",
        args: &[],
        one_core: true,
    },
    ModelSpec {
        name: "c",
        bin: "echo-c",
        args: &[],
        one_core: true,
    },
    ModelSpec {
        name: "reuseport",
        bin: "echo-reuseport",
        args: &[],
        one_core: false,
    },
    ModelSpec {
        name: "fork",
        bin: "echo-fork",
        args: &["--reap", "sigchld"],
        one_core: true,
    },
];

/// Looks up models by name (`epoll-lt,select`); `None` or empty means all.
pub fn select_models(names: &[String]) -> anyhow::Result<Vec<ModelSpec>> {
    if names.is_empty() {
        return Ok(MODELS.to_vec());
    }
    names
        .iter()
        .map(|n| {
            let n = n.trim().trim_start_matches("echo-");
            MODELS
                .iter()
                .copied()
                .find(|m| m.name == n)
                .with_context(|| {
                    let known: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
                    format!("unknown model '{n}' (known: {})", known.join(", "))
                })
        })
        .collect()
}

/// The workspace this loadgen was built from, if it is still there.
pub fn workspace_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).ok()?;
    (manifest.contains("[workspace]") && manifest.contains("echo-epoll-lt"))
        .then(|| root.canonicalize().unwrap_or(root))
}

/// The directory of this executable's build profile (`target/release`), skipping `deps/` when
/// called from a test binary.
pub fn own_profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent()?.to_path_buf();
    }
    Some(dir)
}

/// Finds the directory holding the server binaries. With `explicit`, that one. Otherwise the
/// directory of this executable; when run from the workspace, first (re)build the servers there
/// with the same profile (`cargo build [--release] --bins -p netlab`), showing cargo's progress.
pub fn locate_servers(explicit: Option<&Path>, build: bool) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        if !dir.is_dir() {
            bail!("--bin-dir {}: no such directory", dir.display());
        }
        return Ok(dir.to_path_buf());
    }
    let dir = own_profile_dir().context("cannot tell where this executable lives")?;
    if build {
        if let Some(root) = workspace_root() {
            build_servers(&root, &dir)?;
            return Ok(dir);
        }
    }
    if !MODELS.iter().any(|m| dir.join(m.bin).exists()) {
        bail!(
            "no echo server binaries next to {} (build them with `cargo build --release --bins`, or pass --bin-dir DIR)",
            dir.display()
        );
    }
    Ok(dir)
}

fn build_servers(root: &Path, profile_dir: &Path) -> anyhow::Result<()> {
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let target_dir = profile_dir
        .parent()
        .context("profile directory has no parent")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--bins", "-p", "netlab"])
        .env("CARGO_TARGET_DIR", target_dir);
    if release {
        command.arg("--release");
    }
    eprintln!(
        "loadgen: building the echo servers (cargo build{} --bins -p netlab)",
        if release { " --release" } else { "" }
    );
    let status = command
        .status()
        .context("cannot run cargo to build the echo servers")?;
    if !status.success() {
        bail!("cargo build of the echo servers failed ({status})");
    }
    Ok(())
}

/// How the server should listen.
#[derive(Debug, Clone)]
pub enum Listen {
    /// 127.0.0.1 on a free port.
    Tcp,
    Unix(PathBuf),
}

/// A server loadgen started. Dropping it kills and reaps the process.
pub struct RunningServer {
    pub model: String,
    pub pid: i32,
    pub target: Target,
    child: Option<Child>,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// How a server ended.
#[derive(Debug, Clone)]
pub struct Stopped {
    /// `stopped model=... connections=... bytes=... refused=... errors=...`
    pub line: Option<String>,
    pub fields: HashMap<String, String>,
    pub exit_ok: bool,
    /// Problems with the stop itself (no stopped line, bad exit status, needed SIGKILL).
    pub problems: Vec<String>,
}

impl Stopped {
    pub fn count(&self, key: &str) -> u64 {
        self.fields
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl RunningServer {
    /// Starts `bin args... --addr 127.0.0.1:0` (or `--unix PATH`), waits for its listening line
    /// and pins it (all its threads) to `core`.
    pub fn start(
        bin: &Path,
        args: &[&str],
        listen: &Listen,
        core: Option<usize>,
    ) -> Result<RunningServer, String> {
        if !bin.exists() {
            return Err(format!("{} not found", bin.display()));
        }
        let mut command = Command::new(bin);
        command.args(args);
        match listen {
            Listen::Tcp => command.args(["--addr", "127.0.0.1:0"]),
            Listen::Unix(path) => command.arg("--unix").arg(path),
        };
        command
            .args(["--backlog", "4096"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id() as i32;
        if let Some(core) = core {
            pin_process(pid, core);
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let keep = Arc::clone(&stderr_lines);
        std::thread::spawn(move || {
            let mut text = String::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                while let Some(pos) = text.find('\n') {
                    let line: String = text.drain(..=pos).collect();
                    let mut lines = keep.lock().unwrap();
                    if lines.len() < 200 {
                        lines.push(line.trim_end().to_string());
                    }
                }
            }
        });
        let mut server = RunningServer {
            model: String::new(),
            pid,
            target: Target::Tcp("127.0.0.1:0".parse().unwrap()),
            child: Some(child),
            stdout: rx,
            stderr: stderr_lines,
        };
        let line = match server.stdout.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => line,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                let why = server.stderr_summary();
                let code = server
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                    .and_then(|status| status.code());
                server.kill();
                if code == Some(69) {
                    // EX_UNAVAILABLE: say why in the server's own words, minus its name.
                    let reason = why.split_once(NOT_BUILT).map_or(why.as_str(), |(_, r)| r);
                    return Err(format!("{NOT_BUILT}{reason}"));
                }
                return Err(if why.is_empty() {
                    "exited without a listening line".into()
                } else {
                    why
                });
            }
        };
        let Some((target, model)) = parse_listening(&line) else {
            server.kill();
            return Err(format!("unexpected first line: {line:?}"));
        };
        server.target = target;
        server.model = model;
        // Threads made before the pin (none in these servers, but cheap to be sure) get it too.
        if let Some(core) = core {
            pin_process(pid, core);
        }
        Ok(server)
    }

    /// The server's stderr so far, on one line.
    pub fn stderr_summary(&self) -> String {
        self.stderr.lock().unwrap().join(" | ")
    }

    /// SIGTERM, wait (5 s, then SIGKILL), and check the stopped line and exit status.
    pub fn stop(mut self) -> Stopped {
        let mut problems = Vec::new();
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
        let mut child = self.child.take().expect("stop once");
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    problems.push("did not exit within 5 s of SIGTERM; killed".to_string());
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let exit_ok = status.is_some_and(|s| s.success());
        if let Some(s) = status.filter(|s| !s.success()) {
            problems.push(format!("exited with {s}"));
        }
        let mut line = None;
        while let Ok(l) = self.stdout.recv_timeout(Duration::from_millis(500)) {
            if l.starts_with("stopped ") {
                line = Some(l);
                break;
            }
        }
        if line.is_none() {
            problems.push("no 'stopped' line on stdout".to_string());
        }
        let fields = line
            .as_deref()
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Stopped {
            line,
            fields,
            exit_ok,
            problems,
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `listening on 127.0.0.1:PORT pid=N model=NAME` -> (target, model).
pub fn parse_listening(line: &str) -> Option<(Target, String)> {
    let rest = line.strip_prefix("listening on ")?;
    let mut parts = rest.split_whitespace();
    let target = Target::parse(parts.next()?).ok()?;
    let model = parts
        .find_map(|p| p.strip_prefix("model="))
        .unwrap_or("unknown")
        .to_string();
    Some((target, model))
}

/// Pins every thread of `pid` to `core` (sched_setaffinity per task; new threads inherit).
pub fn pin_process(pid: i32, core: usize) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        if let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        {
            let _ = pin_thread(tid, core);
        }
    }
}

/// Pins one thread (0 = the calling thread) to `core`.
pub fn pin_thread(tid: i32, core: usize) -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(core)?;
    nix::sched::sched_setaffinity(Pid::from_raw(tid), &set)
}

/// Online CPUs of the machine.
pub fn online_cores() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|t| t.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        let (target, model) =
            parse_listening("listening on 127.0.0.1:4242 pid=7 model=epoll-lt").unwrap();
        assert_eq!(target, Target::Tcp("127.0.0.1:4242".parse().unwrap()));
        assert_eq!(model, "epoll-lt");
        let (target, _) =
            parse_listening("listening on unix:/tmp/a.sock pid=7 model=poll").unwrap();
        assert_eq!(target, Target::Unix("/tmp/a.sock".into()));
        assert!(parse_listening("hello").is_none());
        assert!(select_models(&["epoll-et".into(), "echo-select".into()]).is_ok());
        assert!(select_models(&["nope".into()]).is_err());
    }
}
