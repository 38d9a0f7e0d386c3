//! loadgen against servers that misbehave. Each case must give a clear report, a non-zero exit
//! and no hang: every loadgen here runs under a bound of its own, and a run past it fails the
//! test as a hang. The bad servers are a few lines of std each, on port 0.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

use common::{http_server, server_dir, tcp_server};
use netlab_loadgen::engine::{self, NoWindow};
use netlab_loadgen::servers::{Listen, RunningServer};
use netlab_loadgen::{RunReport, Target, Workload};

/// Runs loadgen; fails the test as a hang if it has not ended within `limit`.
fn loadgen_within(limit: Duration, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loadgen");
    let pid = child.id().to_string();
    let (done, output) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match output.recv_timeout(limit) {
        Ok(out) => out.expect("loadgen output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("loadgen {args:?} hung: still running after {limit:?}");
        }
    }
}

/// 4 connections, a 1 s window, no warmup.
const SHORT: &[&str] = &["-c", "4", "-d", "1s", "--warmup", "0s"];

/// Runs loadgen with JSON output against `target`; returns (exit code, report, stderr).
fn against(target: &str, extra: &[&str]) -> (Option<i32>, RunReport, String) {
    against_with(target, SHORT, extra)
}

fn against_with(target: &str, shape: &[&str], extra: &[&str]) -> (Option<i32>, RunReport, String) {
    let mut args = vec![target];
    args.extend(shape);
    args.extend(extra);
    args.extend(["--format", "json"]);
    let out = loadgen_within(Duration::from_secs(30), &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let reports: Vec<RunReport> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: JSON ({e}): {stderr}"));
    let report = reports.into_iter().next().expect("one report");
    (out.status.code(), report, stderr)
}

#[test]
fn a_server_killed_mid_run_is_reported_with_when_and_the_figures_up_to_then() {
    let dir = server_dir();
    let server = RunningServer::start(&dir.join("echo-epoll-lt"), &[], &Listen::Tcp, None)
        .expect("echo-epoll-lt starts");
    let target = server.target.to_string();
    let pid = server.pid.to_string();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        Command::new("kill").args(["-KILL", &pid]).status().unwrap()
    });
    let started = Instant::now();
    let shape = ["-c", "4", "-d", "2s", "--warmup", "200ms"];
    let (code, report, stderr) = against_with(&target, &shape, &[]);
    assert!(killer.join().unwrap().success());
    drop(server);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "bounded");
    assert!(report.messages > 0, "the figures up to the kill are kept");
    // Each of the 4 connections fails once: the server's end closed (EOF) or reset.
    let e = report.errors;
    assert_eq!(
        e.short_echo + e.reset + e.closed,
        4,
        "{e:?} {:?}",
        report.error_examples
    );
    assert_eq!(e.total(), 4, "{:?}", report.error_examples);
    // The kill came 0.8 s after start, 0.6 s into the window (after a 0.2 s warmup, plus the
    // connect phase); the tests share two cores, so only its order of magnitude is checked.
    let first = &report.error_examples[0];
    let at: f64 = first
        .split(" (")
        .last()
        .and_then(|tail| tail.split(" s into the").next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no time in {first:?}"));
    assert!((0.1..1.9).contains(&at), "{first}");
}

/// Echoes for half a second after the accept, then hangs up.
fn echoing_then_gone(mut stream: TcpStream) {
    let until = Instant::now() + Duration::from_millis(500);
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) if stream.write_all(&buf[..n]).is_err() => return,
            Ok(_) => {}
        }
    }
}

#[test]
fn the_engine_says_when_the_last_connection_was_lost() {
    let addr = tcp_server(echoing_then_gone);
    let workload = Workload {
        connections: 4,
        threads: 2,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(2),
        ..Workload::echo(Target::Tcp(addr))
    };
    let result = engine::run(&workload, &mut NoWindow).unwrap();
    assert!(result.messages > 0);
    assert_eq!(result.errors.total(), 4, "{:?}", result.examples);
    let first = result.first_error_s.expect("the time of the first error");
    let lost = result
        .all_lost_s
        .expect("every connection was lost in the window");
    // About 0.5 s after the connects, which come just before the window; wide bounds, as the
    // tests share two cores.
    assert!(
        first <= lost && (0.1..1.8).contains(&lost),
        "{first} {lost}"
    );
}

#[test]
fn a_thread_with_only_idle_connections_does_not_hide_the_loss() {
    // Two threads, one active and one idle connection: thread 1 holds only the idle one,
    // which the server keeps (it waits in read), so nothing there is ever lost.
    let addr = tcp_server(echoing_then_gone);
    let workload = Workload {
        connections: 1,
        idle: 1,
        threads: 2,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(2),
        ..Workload::echo(Target::Tcp(addr))
    };
    let result = engine::run(&workload, &mut NoWindow).unwrap();
    assert_eq!(result.errors.total(), 1, "{:?}", result.examples);
    let lost = result
        .all_lost_s
        .expect("the only active connection was lost in the window");
    assert!((0.1..1.8).contains(&lost), "{lost}");
}

/// Greets each connection with a line nobody asked for, then echoes.
fn greeting(mut stream: TcpStream) {
    if stream.write_all(b"hello\n").is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

#[test]
fn bytes_nobody_sent_are_a_mismatch_on_idle_and_active_connections() {
    let addr = tcp_server(greeting);
    let workload = Workload {
        connections: 1,
        idle: 1,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(500),
        ..Workload::echo(Target::Tcp(addr))
    };
    let result = engine::run(&workload, &mut NoWindow).unwrap();
    assert_eq!(result.errors.mismatch, 2, "{:?}", result.examples);
    assert_eq!(result.errors.total(), 2, "{:?}", result.examples);
    assert_eq!(result.messages, 0);
    assert!(
        result
            .examples
            .iter()
            .any(|e| e.contains("idle connection 1 received 6 bytes nobody sent")),
        "{:?}",
        result.examples
    );
}

#[test]
fn a_full_unix_backlog_is_named_as_such() {
    // A Unix listener with backlog 0 that never accepts: it queues one connection, and a
    // non-blocking connect(2) past that fails at once with EAGAIN.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    let listener =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&socket2::SockAddr::unix(&path).unwrap())
        .unwrap();
    listener.listen(0).unwrap();
    let workload = Workload {
        connections: 4,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(300),
        timeout: Duration::from_millis(300),
        ..Workload::echo(Target::Unix(path))
    };
    let result = engine::run(&workload, &mut NoWindow).unwrap();
    assert!(result.errors.connect >= 1, "{:?}", result.examples);
    assert_eq!(result.errors.connect, result.connect_errors.refused);
    assert!(
        result.examples.iter().any(|e| e.contains("backlog full")),
        "{:?}",
        result.examples
    );
    drop(listener);
}

/// Reads the first 512-byte message whole, then closes without echoing it (a FIN, as nothing
/// is left unread).
fn swallowing_the_first(mut stream: TcpStream) {
    let mut message = [0u8; 512];
    let _ = stream.read_exact(&mut message);
}

#[test]
fn a_server_that_closes_owing_an_echo_is_a_short_echo() {
    let target = tcp_server(swallowing_the_first).to_string();
    let (code, report, stderr) = against(&target, &["--size", "512"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(report.errors.short_echo, 4, "{:?}", report.error_examples);
    assert_eq!(report.errors.total(), 4);
    assert!(
        report.error_examples[0].contains("server closed it with 1 message(s) still owed"),
        "{:?}",
        report.error_examples
    );
}

/// Accepts and never reads: the echo never comes.
fn never_reading(stream: TcpStream) {
    std::thread::sleep(Duration::from_secs(30));
    drop(stream);
}

#[test]
fn a_server_that_never_reads_is_a_timeout() {
    let target = tcp_server(never_reading).to_string();
    // 4 MiB messages: more than the socket buffers take, so the client's sends stall too.
    let (code, report, stderr) = against(&target, &["--size", "4m", "--timeout", "300ms"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(report.errors.timeout, 4, "{:?}", report.error_examples);
    assert_eq!(report.errors.total(), 4);
    assert_eq!(report.messages, 0);
}

/// Accepts and closes at once.
fn closing(stream: TcpStream) {
    drop(stream);
}

#[test]
fn a_server_that_closes_at_once_is_a_closed_connection() {
    let target = tcp_server(closing).to_string();
    let (code, report, stderr) = against(&target, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    // Closed before any message (the connect phase) or with one owed, or reset: one each.
    let e = report.errors;
    assert_eq!(
        e.closed + e.short_echo + e.reset,
        4,
        "{e:?} {:?}",
        report.error_examples
    );
    assert_eq!(e.total(), 4);
    assert_eq!(report.messages, 0);
}

/// Echoes each read back a second later.
fn slow(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

#[test]
fn a_server_slower_than_the_timeout_is_a_timeout() {
    let target = tcp_server(slow).to_string();
    let (code, report, stderr) = against(&target, &["--timeout", "300ms"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(report.errors.timeout, 4, "{:?}", report.error_examples);
    assert_eq!(report.errors.total(), 4);
    assert!(
        report.error_examples[0].contains("nothing back for 300ms"),
        "{:?}",
        report.error_examples
    );
}

/// Runs `loadgen http` against the HTTP server at `addr`; returns (exit code, report, stderr).
fn http_against(addr: SocketAddr) -> (Option<i32>, RunReport, String) {
    let url = format!("http://{addr}/file");
    let args = ["http", &url, "-c", "4", "-d", "1s", "--warmup", "0s"];
    let (args, extra) = (&args[..], ["--timeout", "300ms", "--format", "json"]);
    let out = loadgen_within(Duration::from_secs(30), &[args, &extra].concat());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let reports: Vec<RunReport> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {stderr}"));
    (
        out.status.code(),
        reports.into_iter().next().unwrap(),
        stderr,
    )
}

#[test]
fn http_a_body_shorter_than_its_length_is_a_timeout() {
    let server = http_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    let (code, report, stderr) = http_against(server);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(report.errors.timeout, 4, "{:?}", report.error_examples);
    assert_eq!(report.errors.total(), 4);
}

#[test]
fn http_a_body_longer_than_its_length_is_an_http_error() {
    // 10 body bytes for a length of 5: the other 5 are read as the next reply's head.
    let server = http_server(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n0123456789");
    let (code, report, stderr) = http_against(server);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(report.errors.http, 4, "{:?}", report.error_examples);
    assert_eq!(report.errors.total(), 4);
    assert!(
        report.error_examples[0].contains("not an HTTP/1.x reply: \"56789HTTP/1.1 200 OK\""),
        "{:?}",
        report.error_examples
    );
}

#[test]
fn http_garbage_is_an_http_error() {
    let server = http_server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
    let (code, report, stderr) = http_against(server);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(report.errors.http, 4, "{:?}", report.error_examples);
    assert_eq!(report.errors.total(), 4);
    assert!(report.error_examples[0].contains("not an HTTP/1.x reply"));

    // Garbage with no blank line at all: refused once the head passes 64 KiB.
    static ENDLESS: [u8; 100_000] = [b'x'; 100_000];
    let server = http_server(&ENDLESS);
    let (code, report, stderr) = http_against(server);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(report.errors.http, 4, "{:?}", report.error_examples);
    assert!(report.error_examples[0].contains("reply head over 64 KiB"));
}
