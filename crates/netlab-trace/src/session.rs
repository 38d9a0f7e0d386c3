//! One model under strace: start it, run a step (the client action, then wait until the server
//! is idle again), and hand back the server's calls that step caused, with notes and a summary.
//!
//! When does a step end? Not after a guessed sleep: when the kernel says every server thread
//! sleeps in a wait ([`crate::idle`]), strace has printed each of those waits' entry, and the
//! trace file has stopped growing, all holding for a short settle time (longer when the step
//! has shown no line yet, since a client action may cause nothing at all). Every wait is
//! bounded: a server that never settles, or dies, ends the run with its stderr.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::client::{EchoClient, HttpClient};
use crate::models::{Protocol, TraceModel};
use crate::notes::{Notes, Thread};
use crate::steps::Action;
use crate::strace::{self, Call, Kind, TraceFile};
use crate::{idle, lines};

/// A step that has not settled by then is an error (the server is stuck or strace is).
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long "idle and the trace unchanged" must hold before a step ends...
const SETTLE: Duration = Duration::from_millis(60);
/// ...and how long when the step has caused no line yet.
const SETTLE_NOTHING_YET: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(5);

/// Sizes of the files fileserve serves.
pub const SMALL_FILE: &[u8] = b"hello, file!\n";
pub const LARGE_FILE_LEN: usize = 4 << 20;

/// What one step showed.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub id: &'static str,
    pub action: &'static str,
    /// What the client did and saw.
    pub client: String,
    /// Bytes the client sent and received in this step.
    pub client_sent: usize,
    pub client_received: usize,
    pub lines: Vec<lines::Block>,
    /// Per thread, its calls' shapes (what must not change from run to run).
    #[serde(skip)]
    pub threads: Vec<Vec<String>>,
    /// Syscalls by name, with how many.
    pub calls: BTreeMap<String, usize>,
    /// Bytes moved by the server's data calls, by call name.
    pub bytes: BTreeMap<String, u64>,
    /// Where each thread sleeps at the end of the step (`accept4(3, `), by tid.
    pub waits_in: Vec<String>,
    /// The server's last stdout line, if the step ended it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

#[derive(Clone, Copy)]
pub struct Options {
    /// strace -tt.
    pub timestamps: bool,
}

/// A running model: strace, the server under it, and the client.
pub struct Session {
    pub model: &'static TraceModel,
    notes: Notes,
    strace: Option<Child>,
    pub server_pid: i32,
    addr: SocketAddr,
    trace: TraceFile,
    traced: Vec<String>,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: std::thread::JoinHandle<()>,
    echo: EchoClient,
    http: HttpClient,
    _dir: tempfile::TempDir,
}

impl Session {
    /// Starts `model` under strace from `bin_dir` and runs the start step.
    pub fn start(
        model: &'static TraceModel,
        bin_dir: &Path,
        options: Options,
    ) -> anyhow::Result<(Session, Step)> {
        let strace_bin = strace::find_strace()
            .context("strace is not installed: run scripts/setup.sh (or apt-get install strace)")?;
        let bin = bin_dir.join(model.bin);
        if !bin.is_file() {
            bail!("{} is not built (no {})", model.bin, bin.display());
        }
        let notes = Notes::for_model(model.name, model.lab)?;
        let dir = tempfile::tempdir()?;
        let trace_path = dir.path().join("trace");
        let mut command = Command::new(strace_bin);
        command.args(["-f", "--seccomp-bpf", "-s", "24"]);
        if options.timestamps {
            command.arg("-tt");
        }
        command
            .arg("-o")
            .arg(&trace_path)
            .arg("-e")
            .arg(format!("trace={}", model.trace_list()))
            .arg("--")
            .arg(&bin)
            .args(model.args)
            .args(["--addr", "127.0.0.1:0"]);
        if model.protocol == Protocol::Http {
            let root = dir.path().join("root");
            std::fs::create_dir(&root)?;
            std::fs::write(root.join("small.txt"), SMALL_FILE)?;
            let large: Vec<u8> = (0..LARGE_FILE_LEN).map(|i| (i % 253) as u8).collect();
            std::fs::write(root.join("large.bin"), large)?;
            // Long timeouts: the 1 s sweep is the only timer left.
            command.arg("--root").arg(&root).args([
                "--header-timeout",
                "1h",
                "--send-timeout",
                "1h",
                "--keepalive-timeout",
                "1h",
            ]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("cannot start strace")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped");
        let keep = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut text = keep.lock().unwrap();
                if text.len() < 64 << 10 {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let mut session = Session {
            model,
            notes,
            strace: Some(child),
            server_pid: 0,
            addr: "127.0.0.1:0".parse().unwrap(),
            trace: TraceFile::new(&trace_path),
            traced: model.trace_list().split(',').map(str::to_string).collect(),
            stdout: rx,
            stderr,
            stderr_reader,
            echo: EchoClient::default(),
            http: HttpClient::default(),
            _dir: dir,
        };
        let (addr, pid) = session.wait_listening()?;
        session.addr = addr;
        session.server_pid = pid;
        let mut calls = session.settle(false)?;
        // Before its execve the traced process is still strace's child, closing strace's fds.
        if let Some(exec) = calls.iter().position(|c| c.name == "execve") {
            calls.drain(..exec);
        }
        let said = format!("(no client yet; the server is pid {pid}, listening on {addr})");
        let step = session.make_step(Action::Start, said, 0, 0, calls, None);
        Ok((session, step))
    }

    /// `listening on 127.0.0.1:PORT pid=N ...`, within 10 s, or the server's stderr.
    fn wait_listening(&mut self) -> anyhow::Result<(SocketAddr, i32)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.stdout.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    let Some(rest) = line.strip_prefix("listening on ") else {
                        continue;
                    };
                    let mut words = rest.split_whitespace();
                    let addr = words.next().and_then(|a| a.parse().ok());
                    let pid = words
                        .find_map(|w| w.strip_prefix("pid="))
                        .and_then(|p| p.parse().ok());
                    match (addr, pid) {
                        (Some(addr), Some(pid)) => return Ok((addr, pid)),
                        _ => bail!("cannot read the server's listening line: {line:?}"),
                    }
                }
                Err(_) if self.exited() => bail!(
                    "{} exited before listening; its stderr:\n{}",
                    self.model.bin,
                    self.stderr_text()
                ),
                Err(_) if Instant::now() > deadline => bail!(
                    "{} did not print its listening line within 10 s; its stderr:\n{}",
                    self.model.bin,
                    self.stderr_text()
                ),
                Err(_) => {}
            }
        }
    }

    fn exited(&mut self) -> bool {
        match self.strace.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// The server's stderr so far. Once it has exited, first lets the reader thread take in
    /// the last of it (the pipe closes when the process is gone; waited for at most 1 s).
    pub fn stderr_text(&mut self) -> String {
        if self.exited() {
            let deadline = Instant::now() + Duration::from_secs(1);
            while !self.stderr_reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        self.stderr.lock().unwrap().trim_end().to_string()
    }

    fn is_traced(&self, name: &str) -> bool {
        self.traced.iter().any(|t| t == name)
            || (self.traced.iter().any(|t| t == "%network") && lines::is_network_call(name))
    }

    /// Waits until the server is idle again (or, with `expect_exit`, gone) and returns the
    /// calls since the last step.
    fn settle(&mut self, expect_exit: bool) -> anyhow::Result<Vec<Call>> {
        let started = Instant::now();
        let mut calls = Vec::new();
        let mut quiet: Option<(Instant, u64)> = None;
        let mut last_busy = String::from("not checked yet");
        loop {
            calls.extend(self.trace.read_new());
            if self.exited() {
                std::thread::sleep(POLL);
                calls.extend(self.trace.read_new());
                if expect_exit {
                    return Ok(calls);
                }
                bail!(
                    "{} died during the step; its stderr:\n{}",
                    self.model.bin,
                    self.stderr_text()
                );
            }
            let size = self.trace.size();
            let now = Instant::now();
            let idle = if expect_exit {
                Err("waiting for the server to exit".to_string())
            } else {
                let mut pids = self.trace.tids.clone();
                pids.push(self.server_pid);
                idle::check(&pids, &self.trace.pending(), &|n| self.is_traced(n))
                    .map_err(|b| b.to_string())
            };
            match idle {
                Ok(()) => match quiet {
                    Some((since, at)) if at == size => {
                        let need = if calls.is_empty() {
                            SETTLE_NOTHING_YET
                        } else {
                            SETTLE
                        };
                        if now - since >= need {
                            return Ok(calls);
                        }
                    }
                    _ => quiet = Some((now, size)),
                },
                Err(busy) => {
                    quiet = None;
                    last_busy = busy;
                }
            }
            if now - started > STEP_TIMEOUT {
                bail!(
                    "{} did not become idle within {} s ({last_busy}); its stderr:\n{}",
                    self.model.bin,
                    STEP_TIMEOUT.as_secs(),
                    self.stderr_text()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Runs one step: the client action, then waits for the server to settle.
    pub fn run(&mut self, action: Action) -> anyhow::Result<Step> {
        if action == Action::SendLarge {
            return self.send_large();
        }
        let (client, sent, received) = self.act(action)?;
        let expect_exit = action == Action::Sigterm;
        let calls = self.settle(expect_exit)?;
        let stopped = if expect_exit {
            self.reap()?;
            let mut last = None;
            while let Ok(line) = self.stdout.recv_timeout(Duration::from_millis(200)) {
                last = Some(line);
            }
            last
        } else {
            None
        };
        Ok(self.make_step(action, client, sent, received, calls, stopped))
    }

    /// "Larger than the socket buffers" is decided by the kernel too: the client writes until
    /// EAGAIN, waits for the server to settle, and writes again while the server's reading
    /// made room; it stops when the server is idle and the client's socket still has none.
    fn send_large(&mut self) -> anyhow::Result<Step> {
        let mut sent = 0;
        let mut calls = Vec::new();
        let mut rounds = 0;
        loop {
            sent += self.echo.send_until_eagain()?;
            calls.extend(self.settle(false)?);
            rounds += 1;
            if !self.echo.can_write()? || rounds >= 100 {
                break;
            }
        }
        let said = format!(
            "wrote {sent} bytes without reading, until its socket said EAGAIN and the server, idle, made no more room"
        );
        Ok(self.make_step(Action::SendLarge, said, sent, 0, calls, None))
    }

    fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        kill(Pid::from_raw(self.server_pid), signal)
            .with_context(|| format!("cannot signal the server (pid {})", self.server_pid))
    }

    fn act(&mut self, action: Action) -> anyhow::Result<(String, usize, usize)> {
        let addr = self.addr;
        Ok(match action {
            Action::Start => bail!("start is the first step of every session"),
            Action::Connect if self.model.protocol == Protocol::Http => {
                (self.http.connect(addr)?, 0, 0)
            }
            Action::Connect => (self.echo.connect(addr)?, 0, 0),
            Action::SendLine => {
                let (said, n) = self.echo.send_line()?;
                (said, n, 0)
            }
            Action::ReadEcho => {
                let (said, n) = self.echo.read_echo()?;
                (said, 0, n)
            }
            Action::SendLarge => bail!("send-large is run by send_large"),
            Action::ReadRest => {
                let (said, n) = self.echo.read_rest()?;
                (said, 0, n)
            }
            Action::SecondClient => (self.echo.connect_second(addr)?, 0, 0),
            Action::HalfClose => (self.echo.half_close()?, 0, 0),
            Action::Reset => (self.echo.reset()?, 0, 0),
            Action::GetSmall => self.get("/small.txt", "")?,
            Action::GetLarge => self.get("/large.bin", "")?,
            Action::NotModified => self.get("/small.txt", "if-modified-since")?,
            Action::Range => self.get("/large.bin", "Range: bytes=0-99\r\n")?,
            Action::Close => (self.http.close()?, 0, 0),
            Action::Sigusr1 => {
                self.signal(Signal::SIGUSR1)?;
                ("sent SIGUSR1".into(), 0, 0)
            }
            Action::Sigterm => {
                self.signal(Signal::SIGTERM)?;
                ("sent SIGTERM".into(), 0, 0)
            }
        })
    }

    fn get(&mut self, path: &str, extra: &str) -> anyhow::Result<(String, usize, usize)> {
        let response = self.http.request(path, extra)?;
        Ok((
            format!(
                "GET {path}: {}, {} body bytes",
                response.status, response.body_len
            ),
            0,
            response.body_len,
        ))
    }

    fn make_step(
        &self,
        action: Action,
        client: String,
        client_sent: usize,
        client_received: usize,
        calls: Vec<Call>,
        stopped: Option<String>,
    ) -> Step {
        let mut counts = BTreeMap::new();
        let mut bytes = BTreeMap::new();
        for call in calls.iter().filter(|c| c.kind == Kind::Syscall) {
            *counts.entry(call.name.clone()).or_insert(0) += 1;
            if let Some(n) = lines::bytes_moved(call).filter(|&n| n > 0) {
                *bytes.entry(call.name.clone()).or_insert(0) += n;
            }
        }
        let waits_in = if stopped.is_some() {
            Vec::new()
        } else {
            self.trace
                .pending_text()
                .into_iter()
                .filter(|(tid, _)| Path::new(&format!("/proc/{tid}")).exists())
                .map(|(tid, text)| lines::label(tid, self.server_pid, &format!("{text}...")))
                .collect()
        };
        let threads = lines::threads(&calls, self.server_pid);
        let lines = lines::collapse(&calls, self.server_pid, |call| {
            let thread = if call.tid == self.server_pid {
                Thread::Main
            } else {
                Thread::Other
            };
            self.notes
                .explain(call, action.id(), thread)
                .map(str::to_string)
        });
        Step {
            id: action.id(),
            action: action.words(),
            client,
            client_sent,
            client_received,
            lines,
            threads,
            calls: counts,
            bytes,
            waits_in,
            stopped,
        }
    }

    /// Waits for strace (and so the server) to exit.
    fn reap(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.strace.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!(
                        "{} exited with {status}; its stderr:\n{}",
                        self.model.bin,
                        self.stderr_text()
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not exit within 10 s of SIGTERM", self.model.bin);
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Session {
    /// Quitting early (`q`, an error): SIGTERM the server, then SIGKILL if it lingers, and
    /// reap strace. Only the processes this session started.
    fn drop(&mut self) {
        let Some(mut child) = self.strace.take() else {
            return;
        };
        if self.server_pid > 0 {
            let _ = kill(Pid::from_raw(self.server_pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if matches!(child.try_wait(), Ok(None)) {
            if self.server_pid > 0 {
                let _ = kill(Pid::from_raw(self.server_pid), Signal::SIGKILL);
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}
