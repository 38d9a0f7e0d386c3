//! The file server (`fileserve`, labs/06-fileserve) over raw sockets and curl: HTTP behaviour,
//! ranges, the traversal suite, big and changing files, timeouts and fd hygiene.
//!
//! Every behaviour test runs once per mode (`sendfile` and `copy`, see `both_modes!`), so
//! the two ways of moving bytes answer exactly the same. Each test starts its own server on
//! port 0 with its own temporary root; a guard kills and reaps it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netlab_core::procfs;

const BIN: &str = env!("CARGO_BIN_EXE_fileserve");
const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";

/// A running server; killed and reaped on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    pid: i32,
}

impl Server {
    fn start(mode: &str, root: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["--addr", "127.0.0.1:0", "--mode", mode, "--root"])
            .arg(root)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fileserve");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        // listening on 127.0.0.1:PORT pid=N model=fileserve-MODE
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.first(), Some(&"listening"), "{line}");
        assert_eq!(fields[4], format!("model=fileserve-{mode}"));
        Server {
            addr: fields[2].parse().unwrap(),
            pid: fields[3].trim_start_matches("pid=").parse().unwrap(),
            child,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends raw bytes on a new connection and reads one response.
    fn exchange(&self, raw: &[u8]) -> Response {
        let mut stream = self.connect();
        stream.write_all(raw).unwrap();
        read_response(&mut BufReader::new(stream), raw.starts_with(b"HEAD"))
    }

    /// `GET path` with HTTP/1.1 and `Connection: close`, plus extra header lines.
    fn get(&self, path: &str, headers: &str) -> Response {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\r\n");
        self.exchange(raw.as_bytes())
    }

    /// SIGTERM, then the summary line the server prints on stdout as it exits.
    fn stop(mut self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let mut rest = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut rest)
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
        rest
    }

    fn cpu_ticks(&self) -> u64 {
        let stat = procfs::stat(self.pid).unwrap();
        stat.utime_ticks + stat.stime_ticks
    }

    fn open_fds(&self) -> usize {
        procfs::open_fds(self.pid).unwrap()
    }

    /// Waits (up to 5 s) until the server holds `baseline` fds again.
    fn assert_fds_return_to(&self, baseline: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.open_fds() != baseline {
            assert!(
                Instant::now() < deadline,
                "fds stayed at {} (baseline {baseline})",
                self.open_fds()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn length(&self) -> u64 {
        self.header("content-length").unwrap().parse().unwrap()
    }
}

/// Reads one response; the body is `Content-Length` bytes unless it is a HEAD or a 304.
fn read_response(reader: &mut impl BufRead, head_request: bool) -> Response {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 "), "status line: {line:?}");
    let status = line[9..12].parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').unwrap();
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || status == 304 {
        return response;
    }
    if response.header("transfer-encoding") == Some("chunked") {
        response.body = read_chunked(reader);
    } else if response.header("content-length").is_some() {
        let mut body = vec![0; response.length() as usize];
        reader.read_exact(&mut body).unwrap();
        response.body = body;
    } else {
        // No length and not chunked: the body ends when the server closes (HTTP/1.0).
        reader.read_to_end(&mut response.body).unwrap();
    }
    response
}

/// A chunked body, read line by line as a client would: `SIZE\r\n`, the bytes, `\r\n`,
/// until the zero-size chunk and the empty trailer line. Panics on bad framing.
fn read_chunked(reader: &mut impl BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let size = usize::from_str_radix(line.trim_end_matches("\r\n"), 16)
            .unwrap_or_else(|_| panic!("chunk-size line: {line:?}"));
        let mut data = vec![0; size + 2];
        reader.read_exact(&mut data).unwrap();
        assert_eq!(
            &data[size..],
            b"\r\n",
            "chunk of {size} bytes not closed by CRLF"
        );
        if size == 0 {
            return body; // the last chunk: "0\r\n" and the empty trailer section "\r\n"
        }
        body.extend_from_slice(&data[..size]);
    }
}

/// Reads until the server closes; returns how many bytes came.
fn count_to_eof(reader: &mut impl Read) -> u64 {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return total,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// The byte at offset `i` of the pattern files.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

fn write_pattern(path: &Path, len: u64) {
    let data: Vec<u8> = (0..len).map(pattern).collect();
    std::fs::write(path, data).unwrap();
}

/// A temporary directory holding `root/` (served) and `secret.txt` beside it (never served).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("withindex")).unwrap();
        std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
        std::fs::write(root.join("hello.txt"), "hello world\n").unwrap();
        std::fs::write(root.join("page.html"), "<p>hi</p>\n").unwrap();
        std::fs::write(root.join("noext"), "x").unwrap();
        std::fs::write(root.join("empty.txt"), "").unwrap();
        std::fs::write(root.join("%2e%2e"), "a file named %2e%2e\n").unwrap();
        write_pattern(&root.join("data.bin"), 1000);
        std::fs::write(root.join("sub/one.txt"), "one\n").unwrap();
        std::fs::write(root.join("sub/we ird&<name>.txt"), "w\n").unwrap();
        std::fs::write(root.join("withindex/index.html"), "<h1>index</h1>\n").unwrap();
        let link =
            |target: &str, name: &str| std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        link("hello.txt", "link_inside");
        link("../secret.txt", "link_out");
        link(dir.path().join("secret.txt").to_str().unwrap(), "link_abs");
        link("/etc", "link_etc");
        link("sub/../../secret.txt", "link_sneaky");
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        Fixture { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

/// Runs each named behaviour test once per mode.
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod sendfile {
            $(#[test] fn $name() { super::$name("sendfile") })*
        }
        mod copy {
            $(#[test] fn $name() { super::$name("copy") })*
        }
    };
}

both_modes!(
    get_and_head,
    keep_alive_and_pipelining,
    http10_and_connection_close,
    last_modified_and_304,
    range_edge_cases,
    other_methods_get_405,
    directories,
    errors_and_limits,
    traversal_suite,
    with_curl,
    sparse_file_past_4_gib,
    delete_while_sending,
    truncate_while_sending,
    header_trickle_times_out,
    reader_that_stops_times_out,
    fifo_does_not_block,
    fds_return_to_baseline,
    garbage_does_not_crash,
    hidden_names_are_refused,
    error_answers_survive_unread_input,
    etags_and_conditional_requests,
    listing_is_chunked_or_ends_at_close,
    request_bodies_with_transfer_encoding,
);

/// ETag: strong once the file has settled (1 s after its last change), weak before; the same
/// for every request while the file stays; If-None-Match gives 304 and wins over
/// If-Modified-Since (RFC 9110 §13.2.2); If-Range with the tag gives 206, with another 200.
fn etags_and_conditional_requests(mode: &str) {
    let fx = Fixture::new();
    let root = fx.root();
    // Settled: modified two seconds ago.
    let old = std::time::SystemTime::now() - Duration::from_secs(2);
    let file = std::fs::File::options()
        .write(true)
        .open(root.join("data.bin"))
        .unwrap();
    file.set_modified(old).unwrap();
    drop(file);
    let server = Server::start(mode, &root, &[]);
    let first = server.get("/data.bin", "");
    let etag = first.header("etag").unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    assert_eq!(
        server.get("/data.bin", "").header("etag"),
        Some(etag.as_str())
    );
    let last_modified = first.header("last-modified").unwrap().to_string();

    let same = server.get("/data.bin", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(
        (same.status, same.header("etag")),
        (304, Some(etag.as_str()))
    );
    let listed = server.get("/data.bin", &format!("If-None-Match: \"x\", {etag}\r\n"));
    assert_eq!(listed.status, 304);
    let weak_form = server.get("/data.bin", &format!("If-None-Match: W/{etag}\r\n"));
    assert_eq!(weak_form.status, 304, "If-None-Match compares weakly");
    // A tag that does not match sends the file, even with an If-Modified-Since that would 304.
    let other = server.get(
        "/data.bin",
        &format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {last_modified}\r\n"),
    );
    assert_eq!((other.status, other.body.len()), (200, 1000));
    let range = |if_range: &str| {
        server.get(
            "/data.bin",
            &format!("Range: bytes=0-9\r\nIf-Range: {if_range}\r\n"),
        )
    };
    assert_eq!(range(&etag).status, 206);
    assert_eq!(range(&last_modified).status, 206);
    let stale = range("\"not-this-one\"");
    assert_eq!((stale.status, stale.body.len()), (200, 1000));
    assert_eq!(
        range(&format!("W/{etag}")).status,
        200,
        "If-Range compares strongly"
    );
    let failed = server.get("/data.bin", "If-Match: \"other\"\r\n");
    assert_eq!(failed.status, 412);

    // A file changed just now gets a weak tag, which If-Range never accepts.
    std::fs::write(root.join("fresh.txt"), "new\n").unwrap();
    let fresh = server.get("/fresh.txt", "");
    let weak = fresh.header("etag").unwrap().to_string();
    assert!(weak.starts_with("W/\""), "{weak}");
    let ranged = server.get(
        "/fresh.txt",
        &format!("Range: bytes=0-0\r\nIf-Range: {weak}\r\n"),
    );
    assert_eq!(ranged.status, 200);
    // Changing the file changes the tag.
    std::fs::write(root.join("data.bin"), "changed").unwrap();
    let changed = server.get("/data.bin", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(
        (changed.status, changed.body.as_slice()),
        (200, &b"changed"[..])
    );
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
}

/// The listing is generated while it is sent: HTTP/1.1 gets `Transfer-Encoding: chunked` (and
/// the connection stays open for the next request), HTTP/1.0 a body that ends at close. A big
/// directory takes several chunks.
fn listing_is_chunked_or_ends_at_close(mode: &str) {
    let fx = Fixture::new();
    let root = fx.root();
    std::fs::create_dir(root.join("many")).unwrap();
    for i in 0..500 {
        std::fs::write(root.join(format!("many/file-{i:04}.txt")), "").unwrap();
    }
    let server = Server::start(mode, &root, &[]);
    let mut stream = server.connect();
    stream
        .write_all(
            b"GET /many/ HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    // Read the raw framing once, to see more than one chunk-size line.
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        head.push(line.clone());
        if line == "\r\n" {
            break;
        }
    }
    assert!(
        head.iter().any(|l| l == "Transfer-Encoding: chunked\r\n"),
        "{head:?}"
    );
    assert!(
        !head.iter().any(|l| l.starts_with("Content-Length")),
        "{head:?}"
    );
    let mut chunks = 0;
    let mut html = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
        let mut data = vec![0; size + 2];
        reader.read_exact(&mut data).unwrap();
        if size == 0 {
            break;
        }
        chunks += 1;
        html.extend_from_slice(&data[..size]);
    }
    assert!(chunks > 1, "500 entries in {chunks} chunk(s)");
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains(">file-0000.txt</a>") && html.contains(">file-0499.txt</a>"));
    assert!(html.ends_with("</html>\n"));
    // Still in sync: the pipelined request after it is answered.
    assert_eq!(read_response(&mut reader, false).body, b"hello world\n");

    // HTTP/1.0: no chunks, no length, the body ends when the server closes.
    let mut stream = server.connect();
    stream.write_all(b"GET /many/ HTTP/1.0\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let old = read_response(&mut reader, false);
    assert_eq!(old.header("transfer-encoding"), None);
    assert_eq!(old.header("connection"), Some("close"));
    assert_eq!(String::from_utf8(old.body).unwrap(), html);
    // And curl decodes the chunked one the same.
    let (_, body) = curl(&["-s", &server.url("/many/")]);
    assert_eq!(String::from_utf8(body).unwrap(), html);
}

/// This server reads no request bodies. One framed by Transfer-Encoding gets 501 and the
/// connection closes after it (lingering, so the body does not turn the answer into a reset);
/// the next request on a new connection is served.
fn request_bodies_with_transfer_encoding(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &[]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let answer = read_response(&mut reader, false);
    assert_eq!(
        (answer.status, answer.header("connection")),
        (501, Some("close"))
    );
    assert_eq!(count_to_eof(&mut reader), 0, "closes after the 501");
    assert_eq!(server.get("/hello.txt", "").status, 200);
}

/// `--root .` in a repository must not publish `.git`: every path with a segment that starts
/// with a dot is 403 (existing or not), dot names are left out of listings, and
/// `--allow-hidden` serves them.
fn hidden_names_are_refused(mode: &str) {
    let fx = Fixture::new();
    let root = fx.root();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/config"), "[core]\n").unwrap();
    std::fs::write(root.join(".env"), "KEY=1\n").unwrap();
    std::fs::create_dir_all(root.join("sub/.hidden")).unwrap();
    std::fs::write(root.join("sub/.hidden/x.txt"), "x\n").unwrap();
    let server = Server::start(mode, &root, &[]);
    for path in [
        "/.git/config",
        "/.git/",
        "/.git",
        "/.env",
        "/%2egit/config",
        "/sub/.hidden/x.txt",
        "/.nothing-here",
    ] {
        let answer = server.get(path, "");
        assert_eq!(answer.status, 403, "{path}");
        assert!(!String::from_utf8_lossy(&answer.body).contains("core"));
    }
    let top = String::from_utf8(server.get("/", "").body).unwrap();
    assert!(!top.contains(".git") && !top.contains(".env"), "{top}");
    assert_eq!(server.get("/hello.txt", "").status, 200);

    let open = Server::start(mode, &root, &["--allow-hidden"]);
    let config = open.get("/.git/config", "");
    assert_eq!(
        (config.status, config.body.as_slice()),
        (200, &b"[core]\n"[..])
    );
    assert!(String::from_utf8(open.get("/", "").body)
        .unwrap()
        .contains(">.env</a>"));
}

/// Lingering close: a request the server refuses (414, 431) with 200 KB more behind it. Closing
/// at once with unread input would make the kernel send a RST, which can reach the client
/// before it reads its answer (and fails its writes). Every client must write all it sends,
/// read its 4xx, then see a clean end of file.
fn error_answers_survive_unread_input(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &[]);
    let trailer = vec![b'z'; 200_000];
    for i in 0..40 {
        let (head, status) = if i % 2 == 0 {
            (
                format!("GET /{} HTTP/1.1\r\nHost: t\r\n", "a".repeat(9000)),
                414,
            )
        } else {
            let big = "b".repeat(20_000);
            (
                format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n"),
                431,
            )
        };
        let mut stream = server.connect();
        stream.write_all(head.as_bytes()).unwrap();
        for piece in trailer.chunks(4096) {
            if let Err(e) = stream.write_all(piece) {
                panic!("request {i}: the server reset the connection while we sent: {e}");
            }
        }
        let mut reader = BufReader::new(stream);
        assert_eq!(
            read_response(&mut reader, false).status,
            status,
            "request {i}"
        );
        let mut rest = Vec::new();
        match reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "request {i}: {} bytes after the answer",
                rest.len()
            ),
            Err(e) => panic!("request {i}: reset after the answer: {e}"),
        }
    }
    // Still serving, and every lingering connection was closed.
    assert_eq!(server.get("/hello.txt", "").status, 200);
}

fn get_and_head(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &[]);
    let r = server.get("/hello.txt", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello world\n");
    assert_eq!(r.length(), 12);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(r.header("last-modified").unwrap().ends_with(" GMT"));
    assert!(r.header("date").is_some());
    assert_eq!(r.header("connection"), Some("close"));

    assert_eq!(
        server.get("/page.html", "").header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        server.get("/noext", "").header("content-type"),
        Some("application/octet-stream")
    );
    let empty = server.get("/empty.txt", "");
    assert_eq!((empty.status, empty.length()), (200, 0));
    assert_eq!(server.get("/link_inside", "").body, b"hello world\n");

    // HEAD: the same head, no body. A GET right behind it on the same connection parses
    // cleanly only if no body bytes came.
    let mut stream = server.connect();
    stream
        .write_all(
            b"HEAD /data.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let head = read_response(&mut reader, true);
    assert_eq!((head.status, head.length()), (200, 1000));
    assert_eq!(
        head.header("content-type"),
        Some("application/octet-stream")
    );
    let get = read_response(&mut reader, false);
    assert_eq!(get.body, b"hello world\n");
}

fn keep_alive_and_pipelining(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &[]);
    let mut stream = server.connect();
    // Five requests in one write, answered in the order sent, on one connection.
    stream
        .write_all(
            b"GET /data.bin HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /missing HTTP/1.1\r\nHost: t\r\n\r\n\
              HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=-3\r\n\r\n\
              GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let first = read_response(&mut reader, false);
    assert_eq!(first.status, 200);
    assert_eq!(first.body, (0..1000).map(pattern).collect::<Vec<_>>());
    assert_eq!(first.header("connection"), Some("keep-alive"));
    assert_eq!(read_response(&mut reader, false).status, 404);
    let head = read_response(&mut reader, true);
    assert_eq!((head.status, head.length()), (200, 12));
    let range = read_response(&mut reader, false);
    assert_eq!(
        (range.status, range.body.clone()),
        (206, vec![pattern(997), pattern(998), pattern(999)])
    );
    assert_eq!(read_response(&mut reader, false).body, b"hello world\n");
    // Still open: one more request, sent after the others were answered.
    stream
        .write_all(b"GET /sub/one.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader, false).body, b"one\n");
    // A request split across writes is still one request.
    stream.write_all(b"GET /hello.txt HT").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    stream.write_all(b"TP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut reader, false).status, 200);
}

fn http10_and_connection_close(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &[]);
    for raw in [
        &b"GET /hello.txt HTTP/1.0\r\n\r\n"[..],
        b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /hello.txt HTTP/1.0\n\n", // bare LF line ends
    ] {
        let mut stream = server.connect();
        stream.write_all(raw).unwrap();
        let mut reader = BufReader::new(stream);
        let r = read_response(&mut reader, false);
        assert_eq!(r.body, b"hello world\n");
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(
            count_to_eof(&mut reader),
            0,
            "connection not closed after {raw:?}"
        );
    }
    // A client that half-closes after its request still gets the answer.
    let mut stream = server.connect();
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(read_response(&mut reader, false).body, b"hello world\n");
    assert_eq!(count_to_eof(&mut reader), 0);
}

fn last_modified_and_304(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &[]);
    let first = server.get("/hello.txt", "");
    let last_modified = first.header("last-modified").unwrap().to_string();
    let same = server.get(
        "/hello.txt",
        &format!("If-Modified-Since: {last_modified}\r\n"),
    );
    assert_eq!(same.status, 304);
    assert!(same.body.is_empty());
    assert_eq!(same.header("last-modified"), Some(last_modified.as_str()));
    let later = server.get(
        "/hello.txt",
        "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n",
    );
    assert_eq!(later.status, 304);
    let older = server.get(
        "/hello.txt",
        "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
    );
    assert_eq!(
        (older.status, older.body.as_slice()),
        (200, &b"hello world\n"[..])
    );
    let garbage = server.get("/hello.txt", "If-Modified-Since: yesterday\r\n");
    assert_eq!(garbage.status, 200);
    // 304 on a kept-alive connection, then another request on it.
    let mut stream = server.connect();
    let raw = format!(
        "GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {last_modified}\r\n\r\nGET /noext HTTP/1.1\r\nHost: t\r\n\r\n"
    );
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(read_response(&mut reader, false).status, 304);
    assert_eq!(read_response(&mut reader, false).body, b"x");
}

fn range_edge_cases(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &[]);
    let all: Vec<u8> = (0..1000).map(pattern).collect();
    let partial = |range: &str, start: usize, end: usize| {
        let r = server.get("/data.bin", &format!("Range: {range}\r\n"));
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/1000").as_str()),
            "{range}"
        );
        assert_eq!(r.body, all[start..=end], "{range}");
    };
    partial("bytes=0-0", 0, 0);
    partial("bytes=10-19", 10, 19);
    partial("bytes=990-", 990, 999); // open-ended
    partial("bytes=-5", 995, 999); // suffix
    partial("bytes=-5000", 0, 999); // suffix longer than the file
    partial("bytes=995-2000", 995, 999); // last past the end: clamped
    partial("bytes=999-999", 999, 999);

    for unsatisfiable in [
        "bytes=1000-",
        "bytes=1000-1000",
        "bytes=5000-6000",
        "bytes=-0",
    ] {
        let r = server.get("/data.bin", &format!("Range: {unsatisfiable}\r\n"));
        assert_eq!(r.status, 416, "{unsatisfiable}");
        assert_eq!(r.header("content-range"), Some("bytes */1000"));
    }
    let empty = server.get("/empty.txt", "Range: bytes=0-\r\n");
    assert_eq!(
        (empty.status, empty.header("content-range")),
        (416, Some("bytes */0"))
    );

    // Ignored, so the whole file with 200: several ranges, bad syntax, another unit.
    for ignored in ["bytes=0-1,5-6", "bytes=5-3", "bytes=abc", "lines=1-2"] {
        let r = server.get("/data.bin", &format!("Range: {ignored}\r\n"));
        assert_eq!((r.status, r.body.len()), (200, 1000), "{ignored}");
    }
    // If-Range with another date: the range no longer applies.
    let r = server.get(
        "/data.bin",
        "Range: bytes=0-9\r\nIf-Range: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
    );
    assert_eq!((r.status, r.body.len()), (200, 1000));
    // HEAD with a range: the 206 head, no body.
    let head = server.exchange(
        b"HEAD /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-199\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((head.status, head.length()), (206, 100));
}

fn other_methods_get_405(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &[]);
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"] {
        let raw = format!("{method} /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = server.exchange(raw.as_bytes());
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }
    // A body on the request: answered, then the connection is closed (the body is not read
    // as a next request).
    let mut stream = server.connect();
    stream
        .write_all(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nGET /")
        .unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(read_response(&mut reader, false).status, 405);
    assert_eq!(count_to_eof(&mut reader), 0);
}

fn directories(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &[]);
    let moved = server.get("/sub", "");
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("location"), Some("/sub/"));
    // Never an open redirect: `//sub` must not become `Location: //sub/` (another host).
    let moved = server.get("//sub", "");
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("location"), Some("/sub/"));
    let index = server.get("/withindex/", "");
    assert_eq!(
        (index.status, index.body.as_slice()),
        (200, &b"<h1>index</h1>\n"[..])
    );
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let listing = server.get("/sub/", "");
    assert_eq!(listing.status, 200);
    let html = String::from_utf8(listing.body).unwrap();
    assert!(html.contains("<a href=\"one.txt\">one.txt</a>"), "{html}");
    assert!(
        html.contains("<a href=\"we%20ird%26%3Cname%3E.txt\">we ird&amp;&lt;name&gt;.txt</a>"),
        "{html}"
    );
    assert!(html.contains("href=\"../\""));
    let top = String::from_utf8(server.get("/", "").body).unwrap();
    assert!(top.contains("<a href=\"sub/\">sub/</a>") && top.contains("hello.txt"));
    assert!(!top.contains(SECRET) && !top.contains("secret.txt"));
    // The link the listing gives for the odd name works.
    assert_eq!(
        server.get("/sub/we%20ird%26%3Cname%3E.txt", "").body,
        b"w\n"
    );
}

fn errors_and_limits(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &[]);
    let missing = server.get("/nope.txt", "");
    assert_eq!(
        (missing.status, missing.body.as_slice()),
        (404, &b"404 Not Found\n"[..])
    );
    assert_eq!(server.get("/hello.txt/x", "").status, 404);
    assert_eq!(server.get("/hello.txt/", "").status, 404);
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /hello.txt\r\n\r\n",
        b"GET  /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\n\r\n", // 1.1 without Host
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",
    ] {
        let mut stream = server.connect();
        stream.write_all(bad).unwrap();
        let mut reader = BufReader::new(stream);
        assert_eq!(
            read_response(&mut reader, false).status,
            400,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(count_to_eof(&mut reader), 0, "400 closes");
    }
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    assert_eq!(server.exchange(long_target.as_bytes()).status, 414);
    // A request line that never ends is cut off at the limit too, without waiting for it.
    let mut stream = server.connect();
    stream
        .write_all(format!("GET /{}", "a".repeat(20_000)).as_bytes())
        .unwrap();
    assert_eq!(
        read_response(&mut BufReader::new(stream), false).status,
        414
    );
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    assert_eq!(server.exchange(big_header.as_bytes()).status, 431);
    let many = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-A: b\r\n".repeat(150)
    );
    assert_eq!(server.exchange(many.as_bytes()).status, 431);
    // A name longer than NAME_MAX within the line limit: the kernel says ENAMETOOLONG.
    let long_name = format!("/{}", "n".repeat(5000));
    assert_eq!(server.get(&long_name, "").status, 414);
    assert_eq!(
        server.exchange(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n").status,
        505
    );
    assert_eq!(server.get("/fifo", "").status, 403);
    // Still serving.
    assert_eq!(server.get("/hello.txt", "").status, 200);
}

fn traversal_suite(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &[]);
    let cases: &[(&str, u16)] = &[
        ("/../secret.txt", 400),
        ("/sub/../../secret.txt", 400),
        ("/./hello.txt", 400),
        ("/%2e%2e/secret.txt", 400),
        ("/%2E%2E/secret.txt", 400),
        ("/.%2e/secret.txt", 400),
        ("/%2e./secret.txt", 400),
        ("/sub%2f..%2f..%2fsecret.txt", 400),
        ("/sub%2F..%2F..%2Fsecret.txt", 400),
        ("/..%2fsecret.txt", 400),
        ("/..\\secret.txt", 400),
        ("/..%5csecret.txt", 400),
        ("/sub\\..\\..\\secret.txt", 400),
        ("/hello.txt%00.html", 400),
        ("/%00", 400),
        ("/a%0d%0aSet-Cookie:x", 400),
        ("/%1b[2J", 400),
        ("/%7f", 400),
        ("/%", 400),
        ("/%zz", 400),
        ("http://t/../secret.txt", 400), // absolute-form
        ("http://t/hello.txt", 400),
        ("secret.txt", 400),
        ("*", 400),
        ("/link_out", 403),        // ../secret.txt
        ("/link_abs", 403),        // /tmp/.../secret.txt
        ("/link_sneaky", 403),     // sub/../../secret.txt
        ("/link_etc/passwd", 403), // through an absolute symlink to a directory
        ("/link_etc/", 403),
        ("//etc/passwd", 404), // merged slashes: etc/passwd beneath the root
        ("/etc/passwd", 404),
        ("/%252e%252e/secret.txt", 404), // decoded once: a name "%2e%2e" (a file), not a dir
        ("/%c0%ae%c0%ae/secret.txt", 404), // overlong UTF-8 dots are just bytes
    ];
    for &(target, status) in cases {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let mut stream = server.connect();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{target}: {text}"
        );
        assert!(
            !text.contains(SECRET) && !text.contains("root:"),
            "{target} disclosed: {text}"
        );
    }
    // Double encoding names a file literally called %2e%2e.
    assert_eq!(server.get("/%252e%252e", "").body, b"a file named %2e%2e\n");
    // A symlink swapped to point outside between requests is refused at open time.
    let root = fx.root();
    std::fs::remove_file(root.join("link_inside")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", root.join("link_inside")).unwrap();
    assert_eq!(server.get("/link_inside", "").status, 403);
    // A bare control byte in the raw request line.
    let r = server.exchange(b"GET /hello\x01.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 400);
}

/// curl is the client most people will point at this server; /usr/bin/curl must exist.
fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl must be installed (apt-get install curl)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.stdout,
    )
}

fn with_curl(mode: &str) {
    let fx = Fixture::new();
    let root = fx.root();
    write_pattern(&root.join("three.bin"), 3 << 20);
    let server = Server::start(mode, &root, &[]);
    let (_, body) = curl(&[&server.url("/three.bin")]);
    assert_eq!(body.len(), 3 << 20);
    assert!(body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(i as u64)));
    let (_, head) = curl(&["-I", &server.url("/three.bin")]);
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Content-Length: 3145728"), "{head}");
    let (_, part) = curl(&["-r", "1048576-1048585", &server.url("/three.bin")]);
    assert_eq!(part, (1048576..1048586).map(pattern).collect::<Vec<_>>());
    let (_, code) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-r",
        "9999999-",
        &server.url("/three.bin"),
    ]);
    assert_eq!(code, b"416");
    let (_, old) = curl(&["--http1.0", &server.url("/hello.txt")]);
    assert_eq!(old, b"hello world\n");
    // -z DATE sends If-Modified-Since: a date after the file's mtime gets 304.
    let (_, code) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-z",
        "Fri, 01 Jan 2100 00:00:00 GMT",
        &server.url("/hello.txt"),
    ]);
    assert_eq!(code, b"304");
    // Two URLs, one connection (curl reuses it: keep-alive).
    let (_, both) = curl(&[
        &server.url("/hello.txt"),
        &server.url("/sub/one.txt"),
        "-w",
        "%{num_connects}",
    ]);
    assert_eq!(both, b"hello world\n1one\n0");
    let (_, code) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--path-as-is",
        &server.url("/../secret.txt"),
    ]);
    assert_eq!(code, b"400");
}

/// A sparse file of 5 GiB (set_len: no disk used), with markers around the 4 GiB line.
fn sparse_file(dir: &Path) -> (u64, u64) {
    let len: u64 = (5 << 30) + 12345;
    let four_gib: u64 = 4 << 30;
    let file = std::fs::File::create(dir.join("huge.bin")).unwrap();
    file.set_len(len).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"BEFORE-4GiB", four_gib - 100).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"MARKER-PAST-4GiB", four_gib + 100).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"THE-END", len - 7).unwrap();
    (len, four_gib)
}

fn sparse_file_past_4_gib(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (len, four_gib) = sparse_file(dir.path());
    let server = Server::start(mode, dir.path(), &[]);

    let head = server.exchange(b"HEAD /huge.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!((head.status, head.length()), (200, len));
    let marker_at = four_gib + 100;
    let r = server.get(
        "/huge.bin",
        &format!("Range: bytes={marker_at}-{}\r\n", marker_at + 15),
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, b"MARKER-PAST-4GiB");
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {marker_at}-{}/{len}", marker_at + 15).as_str())
    );
    let tail = server.get("/huge.bin", "Range: bytes=-7\r\n");
    assert_eq!(tail.body, b"THE-END");

    // 32 MiB across the 4 GiB line in one transfer: a 32-bit offset would wrap to 0 here.
    let (start, end) = (four_gib - (16 << 20), four_gib + (16 << 20) - 1);
    let across = server.get("/huge.bin", &format!("Range: bytes={start}-{end}\r\n"));
    assert_eq!(
        (across.status, across.body.len() as u64),
        (206, end - start + 1)
    );
    let at = |offset: u64, text: &[u8]| {
        let i = (offset - start) as usize;
        assert_eq!(&across.body[i..i + text.len()], text);
    };
    at(four_gib - 100, b"BEFORE-4GiB");
    at(four_gib + 100, b"MARKER-PAST-4GiB");
    at(four_gib, &[0; 16]);
}

/// The whole 5 GiB file through one connection. About 20 s on loopback on two cores, so not
/// in the default run: `cargo test --release --test fileserve -- --ignored`.
#[test]
#[ignore]
fn sparse_file_whole_download_sendfile() {
    let dir = tempfile::tempdir().unwrap();
    let (len, _) = sparse_file(dir.path());
    let server = Server::start("sendfile", dir.path(), &[]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let whole = read_response(&mut reader, true); // head only; count the body ourselves
    assert_eq!(whole.length(), len);
    assert_eq!(count_to_eof(&mut reader), len);
}

/// Starts a download of `name`, reads `first` bytes of the body, and returns the reader.
fn start_download(server: &Server, name: &str, first: usize) -> (BufReader<TcpStream>, u64) {
    let mut stream = server.connect();
    let raw = format!("GET /{name} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let head = read_response(&mut reader, true);
    let mut buf = vec![0; first];
    reader.read_exact(&mut buf).unwrap();
    assert!(buf.iter().enumerate().all(|(i, &b)| b == pattern(i as u64)));
    (reader, head.length())
}

fn delete_while_sending(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let len: u64 = 48 << 20;
    write_pattern(&dir.path().join("going.bin"), len);
    let server = Server::start(mode, dir.path(), &[]);
    let (mut reader, announced) = start_download(&server, "going.bin", 1 << 20);
    assert_eq!(announced, len);
    // The name goes; the open fd in the server keeps the inode (and the bytes) alive.
    std::fs::remove_file(dir.path().join("going.bin")).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len() as u64, len - (1 << 20));
    let offset = 1u64 << 20;
    assert!(rest
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(offset + i as u64)));
    assert_eq!(server.get("/going.bin", "").status, 404);
}

fn truncate_while_sending(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let len: u64 = 64 << 20;
    write_pattern(&dir.path().join("shrinking.bin"), len);
    std::fs::write(dir.path().join("small.txt"), "small\n").unwrap();
    let server = Server::start(mode, dir.path(), &[]);
    let (mut reader, _) = start_download(&server, "shrinking.bin", 1 << 20);
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("shrinking.bin"))
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    // The server notices at its next sendfile/pread (0 bytes before the end) and closes:
    // the client sees end of file short of Content-Length, instead of waiting for ever.
    let received = (1 << 20) + count_to_eof(&mut reader);
    assert!(received < len, "got all {len} bytes of a truncated file");
    // And it does not spin on the writable socket: almost no CPU while idle.
    let before = server.cpu_ticks();
    std::thread::sleep(Duration::from_millis(1000));
    let used = server.cpu_ticks() - before;
    assert!(
        used < 20,
        "server used {used} ticks in 1 s after a truncation"
    );
    assert_eq!(server.get("/small.txt", "").body, b"small\n");
    let summary = server.stop();
    assert!(summary.contains(" truncated=1"), "{summary}");
}

fn header_trickle_times_out(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &["--header-timeout", "600ms"]);
    let mut stream = server.connect();
    let started = Instant::now();
    // One byte every 100 ms: each arrives well within any per-read timeout, but the head as a
    // whole never completes within the header timeout.
    let trickle =
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for &byte in trickle.iter() {
        if stream.write_all(&[byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed after {:?}",
        started.elapsed()
    );
}

fn reader_that_stops_times_out(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    write_pattern(&dir.path().join("big.bin"), 64 << 20);
    let server = Server::start(mode, dir.path(), &["--send-timeout", "1s"]);
    std::thread::sleep(Duration::from_millis(100));
    let baseline = server.open_fds();
    let mut stream = server.connect();
    stream
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Never read: the socket buffers fill, the server makes no progress, and drops us
    // (closing the socket and the file).
    let started = Instant::now();
    while server.open_fds() != baseline + 2 {
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "the socket and the file never were open together"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.assert_fds_return_to(baseline);
    drop(stream);
}

fn fifo_does_not_block(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &[]);
    // Nobody writes to the FIFO: opening it for reading in blocking mode would hang the loop.
    let started = Instant::now();
    assert_eq!(server.get("/fifo", "").status, 403);
    assert_eq!(server.get("/fifo", "Range: bytes=0-\r\n").status, 403);
    assert_eq!(server.get("/hello.txt", "").status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn fds_return_to_baseline(mode: &str) {
    let fx = Fixture::new();
    write_pattern(&fx.root().join("mid.bin"), 16 << 20);
    let server = Server::start(mode, &fx.root(), &[]);
    std::thread::sleep(Duration::from_millis(100));
    let baseline = server.open_fds();
    for _ in 0..20 {
        server.get("/hello.txt", "");
        server.get("/missing", "");
        server.get("/link_out", "");
        server.get("/sub/", "");
        server.get("/data.bin", "Range: bytes=5000-\r\n");
        server.exchange(b"BAD\r\n\r\n");
    }
    // Clients that vanish mid-download: the server closes the socket and the file.
    for _ in 0..5 {
        let (reader, _) = start_download(&server, "mid.bin", 4096);
        drop(reader);
    }
    // A keep-alive connection left open holds exactly one fd (no file between requests).
    let mut idle = server.connect();
    idle.write_all(b"GET /data.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(idle.try_clone().unwrap());
    read_response(&mut reader, false);
    server.assert_fds_return_to(baseline + 1);
    drop((idle, reader));
    server.assert_fds_return_to(baseline);
}

#[test]
fn sigterm_prints_a_summary_and_exits_0() {
    let fx = Fixture::new();
    let server = Server::start("sendfile", &fx.root(), &[]);
    assert_eq!(server.get("/hello.txt", "").status, 200);
    let summary = server.stop();
    assert!(
        summary.starts_with("stopped model=fileserve-sendfile connections=1 requests=1 bytes=12 "),
        "{summary}"
    );
}

#[test]
fn bad_arguments_fail_in_one_line() {
    for args in [
        &["--root", "/definitely/not/here"][..],
        &["--mode", "teleport"],
        &["--header-timeout", "soon"],
        &["--copy-buffer", "0"],
        &["--backlog", "0"],
    ] {
        let out = Command::new(BIN)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("fileserve: error: "), "{stderr}");
    }
}

/// Random bytes, random request-shaped lines and random targets: every one gets an answer or
/// a close, the server stays up, and it holds no more fds afterwards than before.
fn garbage_does_not_crash(mode: &str) {
    let fx = Fixture::new();
    let server = Server::start(mode, &fx.root(), &["--header-timeout", "300ms"]);
    std::thread::sleep(Duration::from_millis(100));
    let baseline = server.open_fds();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64: deterministic, so a failure can be replayed.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: &[&[u8]] = &[
        b"GET ",
        b"HEAD ",
        b"/",
        b"..",
        b"%",
        b"%2e",
        b"%2f",
        b"\\",
        b"\0",
        b"\r\n",
        b"\n",
        b" ",
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"Host: t",
        b"Range: bytes=",
        b"-",
        b"0",
        b"99999999999999999999",
        b",",
        b":",
        b"If-Modified-Since: ",
        b"sub",
        b"hello.txt",
        b"\xff",
        b"\t",
        b"Connection: close",
    ];
    for round in 0..200 {
        let mut raw = Vec::new();
        if round % 4 == 0 {
            raw.extend((0..(next() % 300)).map(|_| next() as u8));
        } else {
            for _ in 0..(next() % 40) {
                raw.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
        }
        raw.extend_from_slice(b"\r\n\r\n");
        let mut stream = server.connect();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = stream.write_all(&raw);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
            "{:?} -> {:?}",
            String::from_utf8_lossy(&raw),
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(server.get("/hello.txt", "").status, 200);
    server.assert_fds_return_to(baseline);
}

/// 10,000 keep-alive connections at once: each makes a request and then stays open, idle,
/// while 100 of them keep asking for two seconds; then every one of the 10,000 asks once more
/// on its same connection. Every answer must be a 200 with the right body, the server must hold
/// one fd per connection (it raised its own fd limit to do so), and it prints what a
/// connection cost it in memory. Ignored by default (it needs 10,000 fds on each side and some
/// seconds): `scripts/fileserve-10k.sh` runs it, and `loadgen http` beside it.
#[test]
#[ignore]
fn ten_thousand_keep_alive_connections() {
    const CONNECTIONS: usize = 10_000;
    const ACTIVE: usize = 100;
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(
        hard as usize > CONNECTIONS + 100,
        "needs RLIMIT_NOFILE above {CONNECTIONS}"
    );

    let fx = Fixture::new();
    let server = Server::start("sendfile", &fx.root(), &["--keepalive-timeout", "120s"]);
    let request = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    let ask = |reader: &mut BufReader<TcpStream>| {
        reader.get_mut().write_all(request).unwrap();
        let answer = read_response(reader, false);
        assert_eq!(
            (answer.status, answer.body.as_slice()),
            (200, &b"hello world\n"[..])
        );
    };
    // The baseline once the loop is up (its epoll fd is made after the listening line) and a
    // first connection has come and gone.
    assert_eq!(server.get("/hello.txt", "").status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let fds_idle = server.open_fds();
    let mut first = BufReader::new(server.connect());
    ask(&mut first);
    let rss_before = procfs::status(server.pid).unwrap().vm_rss_kib;

    let started = Instant::now();
    let mut conns = vec![first];
    while conns.len() < CONNECTIONS {
        let mut reader = BufReader::new(server.connect());
        ask(&mut reader);
        conns.push(reader);
    }
    let opened = started.elapsed();
    server.assert_fds_return_to(fds_idle + CONNECTIONS); // one per connection, files closed
    let rss_after = procfs::status(server.pid).unwrap().vm_rss_kib;

    let busy_until = Instant::now() + Duration::from_secs(2);
    let mut busy_requests = 0;
    while Instant::now() < busy_until {
        for reader in conns.iter_mut().step_by(CONNECTIONS / ACTIVE) {
            ask(reader);
            busy_requests += 1;
        }
    }
    for reader in conns.iter_mut() {
        ask(reader);
    }
    let summary = server.stop();
    eprintln!(
        "{CONNECTIONS} connections opened and answered in {:.1} s; {busy_requests} requests on {ACTIVE} of them \
         in 2 s; then one more on each; server RSS {rss_before} KiB -> {rss_after} KiB, {:.2} KiB per connection; {}",
        opened.as_secs_f64(),
        (rss_after.saturating_sub(rss_before)) as f64 / (CONNECTIONS - 1) as f64,
        summary.trim()
    );
    let expected = CONNECTIONS * 2 + busy_requests + 1;
    assert!(
        summary.contains(&format!(
            " connections={} requests={expected} ",
            CONNECTIONS + 1
        )) && summary.contains(" errors=0 timeouts=0 "),
        "{summary}"
    );
}

/// The start-up hints: the strace line traces exactly what lab 06's README quotes, the loadgen
/// line carries `--server-pid`, and the listening line comes last (on stdout) with loopback
/// in place of a wildcard address.
#[test]
fn start_up_hints_match_the_lab() {
    let fx = Fixture::new();
    let mut child = Command::new(BIN)
        .args(["--addr", "0.0.0.0:0", "--root"])
        .arg(fx.root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on 0.0.0.0:"), "{line}");
    let pid = child.id() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut hints = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut hints)
        .unwrap();
    child.wait().unwrap();
    let traced = |text: &str| {
        let at = text.find("strace -f ").expect("a strace line");
        let rest = &text[at..];
        let start = rest.find("trace=").unwrap() + "trace=".len();
        rest[start..].split_whitespace().next().unwrap().to_string()
    };
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("labs/06-fileserve/README.md"),
    )
    .unwrap();
    assert_eq!(traced(&hints), traced(&readme), "{hints}");
    assert!(hints.contains(&format!("--server-pid {pid}")), "{hints}");
    assert!(
        hints.contains("curl -v http://127.0.0.1:"),
        "loopback, not 0.0.0.0: {hints}"
    );
}
