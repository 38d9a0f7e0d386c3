//! The scripted clients: each method is one client action of a step, bounded in time, and
//! returns what the client saw in a few words. The stepper is not traced; only the server is.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::poll::{PollFd, PollFlags, PollTimeout};

/// No client action waits longer than this for the server.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The large message stops here even if the buffers never fill.
const LARGE_CAP: usize = 64 << 20;
const CHUNK: usize = 64 << 10;

/// The byte at position `i` of the large message (so its echo can be checked): letters, so
/// strace shows them as text.
fn pattern(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)
        .with_context(|| format!("client cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    Ok(stream)
}

/// Reads exactly `n` bytes (or fails after the timeout).
fn read_exact(stream: &mut TcpStream, n: usize, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    let deadline = Instant::now() + CLIENT_TIMEOUT * 2;
    while got < n {
        match stream.read(&mut buf[got..]) {
            Ok(0) => bail!("the server closed the connection after {got} of {n} bytes of {what}"),
            Ok(k) => got += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => bail!("reading {what}: {e} after {got} of {n} bytes"),
        }
        if Instant::now() > deadline {
            bail!("reading {what}: only {got} of {n} bytes within the time limit");
        }
    }
    Ok(buf)
}

/// Two echo clients, as the steps use them.
#[derive(Default)]
pub struct EchoClient {
    first: Option<TcpStream>,
    second: Option<TcpStream>,
    /// Bytes of the large message written and not yet read back.
    large_sent: usize,
}

impl EchoClient {
    fn first(&mut self) -> anyhow::Result<&mut TcpStream> {
        self.first
            .as_mut()
            .context("this step needs the first client, which is not connected")
    }

    pub fn connect(&mut self, addr: SocketAddr) -> anyhow::Result<String> {
        let stream = connect(addr)?;
        let local = stream.local_addr()?;
        self.first = Some(stream);
        Ok(format!("connected from {local}"))
    }

    pub fn connect_second(&mut self, addr: SocketAddr) -> anyhow::Result<String> {
        let stream = connect(addr)?;
        let local = stream.local_addr()?;
        self.second = Some(stream);
        Ok(format!(
            "second client connected from {local}; the first stays idle"
        ))
    }

    pub fn send_line(&mut self) -> anyhow::Result<(String, usize)> {
        self.first()?.write_all(b"hello\n")?;
        Ok(("sent \"hello\\n\" (6 bytes), not reading yet".into(), 6))
    }

    pub fn read_echo(&mut self) -> anyhow::Result<(String, usize)> {
        let got = read_exact(self.first()?, 6, "the echo")?;
        if got != b"hello\n" {
            bail!(
                "the echo was {:?}, not \"hello\\n\"",
                String::from_utf8_lossy(&got)
            );
        }
        Ok(("read \"hello\\n\" back".into(), 6))
    }

    /// Writes without reading until the socket says EAGAIN (or the cap): returns the bytes
    /// written. The caller repeats it while [`Self::can_write`] says the server made room.
    pub fn send_until_eagain(&mut self) -> anyhow::Result<usize> {
        let already = self.large_sent;
        let stream = self.first()?;
        stream.set_nonblocking(true)?;
        let mut sent = 0;
        let mut chunk = vec![0u8; CHUNK];
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        let result = loop {
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = pattern(already + sent + i);
            }
            match stream.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
            if already + sent >= LARGE_CAP || Instant::now() > deadline {
                break Ok(());
            }
        };
        stream.set_nonblocking(false)?;
        result.context("writing the large message")?;
        self.large_sent += sent;
        Ok(sent)
    }

    /// Is there room in the first client's send buffer now (and the cap not reached)?
    pub fn can_write(&mut self) -> anyhow::Result<bool> {
        if self.large_sent >= LARGE_CAP {
            return Ok(false);
        }
        let stream = self.first()?;
        let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
        let ready = nix::poll::poll(&mut fds, PollTimeout::ZERO)?;
        Ok(ready > 0)
    }

    pub fn read_rest(&mut self) -> anyhow::Result<(String, usize)> {
        let n = self.large_sent;
        let got = read_exact(self.first()?, n, "the large echo")?;
        if let Some(i) = got.iter().enumerate().position(|(i, b)| *b != pattern(i)) {
            bail!("the large echo differs from what was sent at byte {i}");
        }
        self.large_sent = 0;
        Ok((format!("read all {n} bytes back, each checked"), n))
    }

    /// shutdown(SHUT_WR) on the first client, then waits for the server's end of file.
    pub fn half_close(&mut self) -> anyhow::Result<String> {
        let stream = self.first()?;
        stream.shutdown(Shutdown::Write)?;
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => Ok("shutdown(SHUT_WR); then read end of file: the server closed too".into()),
            Ok(n) => Ok(format!("shutdown(SHUT_WR); then read {n} more bytes")),
            Err(e) => Ok(format!("shutdown(SHUT_WR); then reading: {e}")),
        }
    }

    /// Closes the second client (the first if there is none) with SO_LINGER 0: a reset.
    pub fn reset(&mut self) -> anyhow::Result<String> {
        let stream = match self.second.take() {
            Some(s) => s,
            None => self.first.take().context("no client to reset")?,
        };
        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
        drop(stream);
        Ok("closed with SO_LINGER 0: the kernel sends RST instead of FIN".into())
    }
}

/// One keep-alive HTTP connection to fileserve.
#[derive(Default)]
pub struct HttpClient {
    stream: Option<TcpStream>,
    last_modified: Option<String>,
}

/// What a response held.
pub struct Response {
    pub status: String,
    pub body_len: usize,
}

impl HttpClient {
    pub fn connect(&mut self, addr: SocketAddr) -> anyhow::Result<String> {
        let stream = connect(addr)?;
        let local = stream.local_addr()?;
        self.stream = Some(stream);
        Ok(format!("connected from {local} (keep-alive)"))
    }

    pub fn close(&mut self) -> anyhow::Result<String> {
        self.stream.take().context("no connection to close")?;
        Ok("closed the connection".into())
    }

    /// Sends one request and reads the whole response.
    pub fn request(&mut self, path: &str, extra: &str) -> anyhow::Result<Response> {
        let extra = match (extra, &self.last_modified) {
            ("if-modified-since", Some(date)) => format!("If-Modified-Since: {date}\r\n"),
            ("if-modified-since", None) => bail!("no Last-Modified seen yet"),
            (other, _) => other.to_string(),
        };
        let stream = self.stream.as_mut().context("not connected")?;
        // One write, so the server gets the request in one piece.
        let request = format!("GET {path} HTTP/1.1\r\nHost: trace\r\n{extra}\r\n");
        stream.write_all(request.as_bytes())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte)? == 0 {
                bail!("the server closed the connection before the end of the response head");
            }
            head.push(byte[0]);
            if head.len() > 16 << 10 {
                bail!("response head over 16 KiB");
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status = head.lines().next().unwrap_or("").to_string();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        if let Some(date) = header("last-modified") {
            self.last_modified = Some(date);
        }
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body_len = if status.contains(" 304 ") || len == 0 {
            0
        } else {
            read_exact(stream, len, "the response body")?.len()
        };
        Ok(Response { status, body_len })
    }
}
