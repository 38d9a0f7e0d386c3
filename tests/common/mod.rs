//! Helpers the integration tests share: start a server binary, learn where it listens from its
//! `listening on ADDR pid=N model=M` line, connect to it over TCP or a Unix-domain socket, stop it
//! and read its `stopped ...` summary, and never leave a child process behind.
//!
//! A test file uses it with `mod common;`. Each test crate uses a different part of it, so unused
//! items are not an error here.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netlab_core::process::eventually;
use netlab_core::Stream;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// How long a server may take to print its "listening" line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGINT/SIGTERM ("within a second or two").
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// The read/write timeout every client socket gets unless a test sets another.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Which kind of socket a server listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Unix,
}

/// Where a server listens, as its "listening" line says: `127.0.0.1:7000` or `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Address {
    /// Parses `127.0.0.1:7000`, `[::1]:7000` or `unix:/tmp/x.sock`.
    pub fn parse(text: &str) -> Option<Address> {
        match text.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => Some(Address::Unix(PathBuf::from(path))),
            Some(_) => None,
            None => text.parse().ok().map(Address::Tcp),
        }
    }

    /// The flags that make a server listen here: `--addr HOST:PORT` or `--unix PATH`.
    pub fn flags(&self) -> Vec<String> {
        match self {
            Address::Tcp(addr) => vec!["--addr".into(), addr.to_string()],
            Address::Unix(path) => vec!["--unix".into(), path.display().to_string()],
        }
    }

    pub fn transport(&self) -> Transport {
        match self {
            Address::Tcp(_) => Transport::Tcp,
            Address::Unix(_) => Transport::Unix,
        }
    }

    /// Connects, with [`IO_TIMEOUT`] on reads and writes.
    pub fn connect(&self) -> io::Result<Client> {
        let stream = match self {
            Address::Tcp(addr) => Stream::Tcp(TcpStream::connect_timeout(addr, IO_TIMEOUT)?),
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
        };
        Client::with_timeouts(stream)
    }

    /// Connects with `SO_RCVBUF` set to `bytes` before connect(2) (TCP picks its window scale at
    /// the handshake, and a set size turns receive-buffer autotuning off), so the peer's writes
    /// back up after a few KiB instead of megabytes. A Unix stream socket's sends are bounded by
    /// the sender's buffer instead; there it changes little.
    pub fn connect_with_receive_buffer(&self, bytes: usize) -> io::Result<Client> {
        use socket2::{Domain, SockAddr, Socket, Type};
        let (domain, target) = match self {
            Address::Tcp(addr) => (Domain::for_address(*addr), SockAddr::from(*addr)),
            Address::Unix(path) => (Domain::UNIX, SockAddr::unix(path)?),
        };
        let socket = Socket::new(domain, Type::STREAM, None)?;
        socket.set_recv_buffer_size(bytes)?;
        socket.connect_timeout(&target, IO_TIMEOUT)?;
        let stream = match self {
            Address::Tcp(_) => Stream::Tcp(socket.into()),
            Address::Unix(_) => Stream::Unix(socket.into()),
        };
        Client::with_timeouts(stream)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "{addr}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A client connection over TCP or a Unix-domain socket: netlab-core's [`Stream`], plus what
/// only a test needs (timeouts, an abortive close, a round trip).
pub struct Client(Stream);

impl Client {
    /// Wraps a connected stream, with [`IO_TIMEOUT`] on reads and writes.
    fn with_timeouts(stream: Stream) -> io::Result<Client> {
        let client = Client(stream);
        client.set_read_timeout(Some(IO_TIMEOUT))?;
        client.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(client)
    }

    /// `SO_RCVTIMEO`: a read that waits longer fails with EAGAIN (`WouldBlock`).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        socket2::SockRef::from(&self.0).set_read_timeout(timeout)
    }

    /// `SO_SNDTIMEO`: a write that waits longer fails with EAGAIN (`WouldBlock`).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        socket2::SockRef::from(&self.0).set_write_timeout(timeout)
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.0.set_nonblocking(nonblocking)
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.0.shutdown(how)
    }

    /// A second handle on the same socket, e.g. to write from one thread and read from another.
    pub fn try_clone(&self) -> io::Result<Client> {
        self.0.try_clone().map(Client)
    }

    /// Closes the connection abortively. TCP: `SO_LINGER` 0 makes close(2) send RST instead of
    /// FIN. A Unix socket has no RST; closing it with unread bytes in its receive queue makes the
    /// peer's next read fail with ECONNRESET, so callers leave some echo unread.
    pub fn reset(self) {
        if let Stream::Tcp(s) = &self.0 {
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
        drop(self);
    }

    /// Sends `data` and reads exactly as many bytes back.
    pub fn round_trip(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        self.write_all(data)?;
        let mut back = vec![0; data.len()];
        self.read_exact(&mut back)?;
        Ok(back)
    }

    /// Reads until end of file (or an error, or the read timeout), returning what came.
    pub fn read_to_end_or_error(&mut self) -> (Vec<u8>, io::Result<()>) {
        let mut all = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return (all, Ok(())),
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (all, Err(e)),
            }
        }
    }
}

impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.0).read(buf)
    }
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Client {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Client {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// `listening on ADDR pid=N model=M`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    pub addr: Address,
    pub pid: i32,
    pub model: String,
}

impl Listening {
    pub fn parse(line: &str) -> Option<Listening> {
        let rest = line.trim().strip_prefix("listening on ")?;
        // Split from the right: a Unix socket path may contain spaces.
        let (addr, rest) = rest.rsplit_once(" pid=")?;
        let (pid, model) = rest.split_once(" model=")?;
        Some(Listening {
            addr: Address::parse(addr)?,
            pid: pid.parse().ok()?,
            model: model.to_string(),
        })
    }
}

/// `stopped model=M connections=N bytes=N refused=N errors=N`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub model: String,
    pub connections: u64,
    pub bytes: u64,
    pub refused: u64,
    pub errors: u64,
}

impl Summary {
    pub fn parse(line: &str) -> Option<Summary> {
        let rest = line.trim().strip_prefix("stopped ")?;
        let fields: HashMap<&str, &str> = rest
            .split_whitespace()
            .map(|word| word.split_once('='))
            .collect::<Option<_>>()?;
        let number = |key: &str| fields.get(key)?.parse().ok();
        Some(Summary {
            model: fields.get("model")?.to_string(),
            connections: number("connections")?,
            bytes: number("bytes")?,
            refused: number("refused")?,
            errors: number("errors")?,
        })
    }
}

/// How to start a server: the binary, its flags, and the limits it runs under.
#[derive(Debug, Clone)]
pub struct Launch {
    program: PathBuf,
    args: Vec<String>,
    nofile_limit: Option<u64>,
    env: Vec<(String, String)>,
    /// The Unix socket's directory, kept alive by the [`ServerProcess`].
    socket_dir: Option<Arc<tempfile::TempDir>>,
}

impl Launch {
    pub fn new(program: impl AsRef<Path>) -> Launch {
        Launch {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            nofile_limit: None,
            env: Vec::new(),
            socket_dir: None,
        }
    }

    /// Sets an environment variable for the server.
    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Launch {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Listens on a fresh address: `--addr 127.0.0.1:0` (any free port) or `--unix` in a new
    /// temporary directory.
    pub fn listen_on(self, transport: Transport) -> Launch {
        match transport {
            Transport::Tcp => self.args(["--addr", "127.0.0.1:0"]),
            Transport::Unix => {
                let dir = Arc::new(tempfile::tempdir().expect("create a temporary directory"));
                let path = dir.path().join("echo.sock");
                let mut launch = self.args(["--unix".to_string(), path.display().to_string()]);
                launch.socket_dir = Some(dir);
                launch
            }
        }
    }

    /// Listens on exactly this address (a restart on the same port, a second instance on a busy
    /// one). Keeps `keep_dir`'s temporary directory alive if the address is in one.
    pub fn listen_at(mut self, addr: &Address, keep_dir: Option<&ServerProcess>) -> Launch {
        if let Some(server) = keep_dir {
            self.socket_dir = server.socket_dir.clone();
        }
        self.args(addr.flags())
    }

    /// Starts the child with `RLIMIT_NOFILE` soft and hard set to `limit`.
    pub fn nofile_limit(mut self, limit: u64) -> Launch {
        self.nofile_limit = Some(limit);
        self
    }

    #[allow(unsafe_code)] // pre_exec: the workspace denies unsafe outside netlab-core
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(limit) = self.nofile_limit {
            // SAFETY: the closure runs in the child between fork and exec, where only
            // async-signal-safe calls are allowed; it makes one setrlimit(2) call and allocates
            // nothing (the error is a plain errno).
            unsafe {
                command.pre_exec(move || {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        limit,
                        limit,
                    )
                    .map_err(io::Error::from)
                });
            }
        }
        command
    }

    fn describe(&self) -> String {
        let name = self
            .program
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        format!("{name} {}", self.args.join(" "))
    }

    /// Starts the server and waits for its "listening" line. Fails (with the server's stderr) if
    /// it exits first or stays silent for [`START_TIMEOUT`].
    pub fn spawn(&self) -> Result<ServerProcess, String> {
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.describe()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (stdout_lines, stdout_thread) = forward_lines(stdout);
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let stderr_thread = collect_text(stderr, Arc::clone(&stderr_text));
        let mut server = ServerProcess {
            child,
            pid: 0,
            addr: Address::Unix(PathBuf::new()),
            model: String::new(),
            stdout_lines,
            stdout_seen: Vec::new(),
            stderr: stderr_text,
            threads: vec![stdout_thread, stderr_thread],
            socket_dir: self.socket_dir.clone(),
            description: self.describe(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let listening = loop {
            match server.next_stdout_line(deadline) {
                Some(line) => {
                    if let Some(listening) = Listening::parse(&line) {
                        break listening;
                    }
                }
                None => {
                    let why = match server.child.try_wait() {
                        Ok(Some(status)) => format!("exited with {status}"),
                        _ => format!("printed no listening line in {START_TIMEOUT:?}"),
                    };
                    // The stderr collector may still be reading: give it a moment.
                    std::thread::sleep(Duration::from_millis(100));
                    return Err(format!(
                        "{} {why}; stdout: {:?}; stderr: {:?}",
                        server.description,
                        server.stdout_seen,
                        server.stderr_text()
                    ));
                }
            }
        };
        assert_eq!(
            listening.pid as u32,
            server.child.id(),
            "the listening line's pid= is the child's pid"
        );
        server.pid = listening.pid;
        server.addr = listening.addr;
        server.model = listening.model;
        Ok(server)
    }

    /// Runs the binary to completion (for `--help` and bad flags), killing it after `timeout`.
    pub fn run(&self, timeout: Duration) -> Finished {
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.describe()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = [
            collect_text(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect_text(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        let status = wait_with_deadline(&mut child, Instant::now() + timeout);
        let status = match status {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let status = child.wait().expect("wait for a killed child");
                for reader in readers {
                    let _ = reader.join();
                }
                panic!(
                    "{} did not exit within {timeout:?} (killed: {status}); stdout {:?}, stderr {:?}",
                    self.describe(),
                    stdout.lock().unwrap(),
                    stderr.lock().unwrap()
                );
            }
        };
        for reader in readers {
            let _ = reader.join();
        }
        let stdout = stdout.lock().unwrap().clone();
        let stderr = stderr.lock().unwrap().clone();
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

/// A process that ran to completion.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A running server. Dropping it sends SIGTERM, then SIGKILL if it lingers, and always waits for
/// it, so no test leaves a process behind, even when it panics.
pub struct ServerProcess {
    child: Child,
    pub pid: i32,
    pub addr: Address,
    pub model: String,
    stdout_lines: Receiver<String>,
    /// Every stdout line read so far.
    stdout_seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    threads: Vec<JoinHandle<()>>,
    socket_dir: Option<Arc<tempfile::TempDir>>,
    description: String,
}

/// How a server ended after [`ServerProcess::stop`].
#[derive(Debug)]
pub struct Stopped {
    pub status: ExitStatus,
    /// The `stopped ...` line, if it printed one.
    pub summary_line: Option<String>,
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Stopped {
    /// The parsed summary line; panics (with everything the server printed) if it is missing or
    /// malformed.
    pub fn summary(&self) -> Summary {
        let line = self.summary_line.as_deref().unwrap_or_else(|| {
            panic!(
                "no `stopped ...` line on stdout; stdout {:?}, stderr {:?}",
                self.stdout, self.stderr
            )
        });
        Summary::parse(line).unwrap_or_else(|| panic!("malformed summary line {line:?}"))
    }
}

impl ServerProcess {
    /// Something to name this server by in assertion messages: `echo-poll --addr ... (pid 42)`.
    pub fn describe(&self) -> String {
        format!("{} (pid {})", self.description, self.pid)
    }

    pub fn connect(&self) -> Client {
        self.addr
            .connect()
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.describe()))
    }

    /// Everything the server wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr satisfies `check`, up to `timeout`. Returns whether it did.
    pub fn wait_for_stderr(&self, timeout: Duration, check: impl Fn(&str) -> bool) -> bool {
        eventually(timeout, || check(&self.stderr.lock().unwrap()))
    }

    /// Has the process exited? (Reaps it if so.)
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waitpid on the server")
    }

    /// Panics, with what the server printed, if it is no longer running.
    pub fn assert_running(&mut self, context: &str) {
        if let Some(status) = self.exit_status() {
            panic!(
                "{} died {context}: {status}; stderr {:?}",
                self.describe(),
                self.stderr_text()
            );
        }
    }

    pub fn signal(&self, signal: Signal) {
        signal::kill(Pid::from_raw(self.pid), signal)
            .unwrap_or_else(|e| panic!("kill -{signal} {}: {e}", self.pid));
    }

    /// Descriptors the server has open now.
    pub fn open_fds(&self) -> usize {
        netlab_core::procfs::open_fds(self.pid).expect("read /proc/PID/fd")
    }

    /// CPU time used so far (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = netlab_core::procfs::stat(self.pid).expect("read /proc/PID/stat");
        stat.utime_ticks + stat.stime_ticks
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        netlab_core::procfs::status(self.pid)
            .expect("read /proc/PID/status")
            .vm_rss_kib
    }

    /// The next stdout line, or None at end of file or once `deadline` passes.
    fn next_stdout_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.stdout_lines.recv_timeout(left) {
            Ok(line) => {
                self.stdout_seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Sends `signal` (SIGTERM or SIGINT) and waits up to [`STOP_TIMEOUT`] for the exit and the
    /// `stopped ...` line. Panics if the server does not exit in time (it is then killed).
    pub fn stop_with(&mut self, signal: Signal) -> Stopped {
        let started = Instant::now();
        self.signal(signal);
        let status = wait_with_deadline(&mut self.child, started + STOP_TIMEOUT);
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "{} did not exit within {STOP_TIMEOUT:?} of {signal}; stdout {:?}, stderr {:?}",
                self.describe(),
                self.stdout_seen,
                self.stderr_text()
            );
        };
        // The process is gone; its output is at most a moment behind (a forked child that kept
        // the pipe open could hold end of file back, so read with a deadline).
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut summary_line = self
            .stdout_seen
            .iter()
            .find(|line| line.starts_with("stopped "))
            .cloned();
        while summary_line.is_none() {
            match self.next_stdout_line(deadline) {
                Some(line) if line.starts_with("stopped ") => summary_line = Some(line),
                Some(_) => {}
                None => break,
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        Stopped {
            status,
            summary_line,
            stdout: self.stdout_seen.clone(),
            stderr: self.stderr_text(),
        }
    }

    /// [`stop_with`](Self::stop_with) SIGTERM.
    pub fn stop(&mut self) -> Stopped {
        self.stop_with(Signal::SIGTERM)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: show what the server said (the harness prints it with the panic).
            let stderr = self.stderr_text();
            let lines: Vec<&str> = stderr.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- {}: last {} lines of stderr ---\n{}",
                self.describe(),
                tail.len(),
                tail.join("\n")
            );
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            if wait_with_deadline(&mut self.child, Instant::now() + STOP_TIMEOUT).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // The readers end at end of file; a grandchild holding the pipes open could delay that,
        // so they are detached rather than joined.
        self.threads.clear();
    }
}

/// Polls `child` until it exits or `deadline` passes.
fn wait_with_deadline(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A thread that sends each line of `source` down a channel.
fn forward_lines(source: impl Read + Send + 'static) -> (Receiver<String>, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (receiver, thread)
}

/// A thread that appends everything from `source` to `text`.
fn collect_text(
    mut source: impl Read + Send + 'static,
    text: Arc<Mutex<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
}

/// `len` bytes that differ from one `seed` to another and do not repeat for a long stretch, so
/// a lost, doubled or reordered chunk shows as a mismatch.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Where two byte strings first differ, for assertion messages (comparing megabytes with
/// `assert_eq!` would print them all).
pub fn first_difference(expected: &[u8], actual: &[u8]) -> Option<usize> {
    expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .or_else(|| (expected.len() != actual.len()).then(|| expected.len().min(actual.len())))
}

/// Panics with a short message unless `actual == expected`.
#[track_caller]
pub fn assert_same_bytes(expected: &[u8], actual: &[u8], what: &str) {
    if let Some(at) = first_difference(expected, actual) {
        panic!(
            "{what}: echo differs at byte {at} (expected {} bytes, got {})",
            expected.len(),
            actual.len()
        );
    }
}

/// A demo binary refuses `bad` with exit status 2 and one line on stderr, and `--help` works.
pub fn assert_bad_input_is_one_line_and_help_works(bin: &str, bad: &str) {
    let out = Command::new(bin).arg(bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{bin} {bad}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{bin} {bad}: {stderr}");
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert!(help.status.success(), "{bin} --help");
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_and_stopped_lines() {
        let tcp = Listening::parse("listening on 127.0.0.1:7000 pid=42 model=poll").unwrap();
        assert_eq!(tcp.addr, Address::Tcp("127.0.0.1:7000".parse().unwrap()));
        assert_eq!((tcp.pid, tcp.model.as_str()), (42, "poll"));
        let spaced = Listening::parse("listening on unix:/tmp/a b pid=1 model=x").unwrap();
        assert_eq!(spaced.addr, Address::Unix("/tmp/a b".into()));
        assert!(Listening::parse("listening on 127.0.0.1:1 model=x").is_none());
        let unix = Listening::parse("listening on unix:/tmp/e.sock pid=7 model=epoll-et").unwrap();
        assert_eq!(unix.addr, Address::Unix("/tmp/e.sock".into()));
        let summary =
            Summary::parse("stopped model=poll connections=3 bytes=10 refused=0 errors=1").unwrap();
        assert_eq!(
            (
                summary.connections,
                summary.bytes,
                summary.refused,
                summary.errors
            ),
            (3, 10, 0, 1)
        );
        assert!(Summary::parse("stopped model=poll connections=3").is_none());
    }

    #[test]
    fn patterns_differ_by_seed() {
        assert_eq!(pattern(1, 100).len(), 100);
        assert_ne!(pattern(1, 64), pattern(2, 64));
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"abc", b"ab"), Some(2));
        assert_eq!(first_difference(b"abc", b"abc"), None);
    }
}
