//! loadgen against the real echo servers and against faulty ones written here.
//!
//! The echo servers belong to the root package, so `CARGO_BIN_EXE_echo-*` does not exist in
//! this package's tests: they are built once (`cargo build --bins -p netlab`, same target dir
//! and profile as this test) and started from there. Every run is short (well under a second
//! of load) and every spawned server is stopped (or killed on drop).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;

mod common;

use common::{http_server, server_dir, tcp_server};
use netlab_loadgen::servers::{Listen, RunningServer, MODELS};
use netlab_loadgen::{measure, Environment, MeasureOptions, RunReport, Target, Workload};

fn short(target: Target, connections: usize) -> Workload {
    Workload {
        connections,
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(600),
        timeout: Duration::from_millis(1500),
        ..Workload::echo(target)
    }
}

fn run(workload: &Workload, pid: Option<i32>) -> RunReport {
    measure(
        workload,
        MeasureOptions {
            label: workload.target.to_string(),
            server_pid: pid,
            syscalls: false,
            environment: Environment::detect(workload),
        },
    )
    .expect("run completes")
}

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen")
}

#[test]
fn every_echo_server_echoes_everything_intact() {
    let dir = server_dir();
    for spec in MODELS {
        // Every declared bin was just built: a missing one is a model this checkout lacks.
        if !dir.join(spec.bin).exists() {
            continue;
        }
        let server = RunningServer::start(&dir.join(spec.bin), spec.args, &Listen::Tcp, None)
            .unwrap_or_else(|e| panic!("{} does not start: {e}", spec.bin));
        let workload = Workload {
            pipeline: 2,
            size: 700,
            ..short(server.target.clone(), 20)
        };
        let report = run(&workload, Some(server.pid));
        let stopped = server.stop();
        assert_eq!(
            report.errors.total(),
            0,
            "{}: {:?}",
            spec.name,
            report.error_examples
        );
        assert!(report.messages > 0, "{}: no message completed", spec.name);
        assert_eq!(report.connected, 20, "{}", spec.name);
        let cost = report.server.as_ref().expect("server cost with a pid");
        assert!(
            cost.cpu_us_per_msg > 0.0 && cost.open_fds >= 20,
            "{}: {cost:?}",
            spec.name
        );
        assert!(
            stopped.exit_ok && stopped.problems.is_empty(),
            "{}: {:?}",
            spec.name,
            stopped.problems
        );
        assert_eq!(stopped.count("connections"), 20, "{}", spec.name);
        assert_eq!(stopped.count("errors"), 0, "{}", spec.name);
    }
}

#[test]
fn a_unix_socket_target_works() {
    let dir = server_dir();
    let sockdir = tempfile::tempdir().unwrap();
    let path = sockdir.path().join("echo.sock");
    let server = RunningServer::start(
        &dir.join("echo-epoll-et"),
        &[],
        &Listen::Unix(path.clone()),
        None,
    )
    .expect("echo-epoll-et on a unix socket");
    assert_eq!(server.target, Target::Unix(path.clone()));
    let target = format!("unix:{}", path.display());
    let out = loadgen(&[
        &target, "-c", "10", "-d", "400ms", "--warmup", "100ms", "--format", "json",
    ]);
    let stopped = server.stop();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<RunReport> = serde_json::from_slice(&out.stdout).expect("JSON parses");
    assert_eq!(reports[0].errors.total(), 0);
    assert!(reports[0].messages > 0);
    assert!(stopped.exit_ok);
}

#[test]
fn json_and_csv_parse_and_carry_the_environment() {
    let dir = server_dir();
    let server = RunningServer::start(&dir.join("echo-epoll-lt"), &[], &Listen::Tcp, None).unwrap();
    let target = server.target.to_string();
    let pid = server.pid.to_string();
    let common = [
        "-c",
        "8",
        "-d",
        "300ms",
        "--warmup",
        "100ms",
        "--server-pid",
        &pid,
    ];

    let mut args = vec![target.as_str()];
    args.extend(common);
    args.extend(["--format", "json"]);
    let out = loadgen(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON parses");
    let run = &json[0];
    assert_eq!(run["status"], "ok");
    assert!(run["msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(run["server"]["cpu_us_per_msg"].as_f64().is_some());
    assert!(run["environment"]["kernel"]
        .as_str()
        .unwrap()
        .starts_with("Linux"));
    assert!(run["environment"]["cores"].as_u64().unwrap() >= 1);
    assert!(run["environment"]["workload"]
        .as_str()
        .unwrap()
        .contains("8 connections"));
    assert_eq!(run["syscalls"]["absent"], "not requested (--syscalls)");

    let mut args = vec![target.as_str()];
    args.extend(common);
    args.extend(["--format", "csv"]);
    let out = loadgen(&args);
    assert!(out.status.success());
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let header = reader.headers().unwrap().clone();
    assert_eq!(
        header.iter().collect::<Vec<_>>(),
        netlab_loadgen::report::CSV_HEADER
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1);
    let col = |name: &str| &rows[0][header.iter().position(|h| h == name).unwrap()];
    assert_eq!(col("errors_total"), "0");
    assert!(col("msgs_per_s").parse::<f64>().unwrap() > 0.0);
    assert!(col("server_cpu_us_per_msg").parse::<f64>().is_ok());
    assert!(server.stop().exit_ok);
}

/// Echoes, but flips one bit of the 100th byte of each connection's stream.
fn corrupting(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let mut seen = 0usize;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
        if seen <= 100 && 100 < seen + n {
            buf[100 - seen] ^= 0x01;
        }
        seen += n;
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Reads the first bytes, then resets the connection (SO_LINGER 0, close: RST).
fn resetting(mut stream: TcpStream) {
    let mut buf = [0u8; 16];
    let _ = stream.read(&mut buf);
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Reads everything, echoes nothing.
fn stalling(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
    }
}

/// Runs loadgen against a faulty server; returns (exit success, the report).
fn against(addr: SocketAddr, extra: &[&str]) -> (bool, RunReport) {
    let target = addr.to_string();
    let mut args = vec![
        target.as_str(),
        "-c",
        "4",
        "-d",
        "500ms",
        "--warmup",
        "0s",
        "--format",
        "json",
    ];
    args.extend(extra);
    let out = loadgen(&args);
    let reports: Vec<RunReport> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), reports.into_iter().next().unwrap())
}

#[test]
fn a_corrupted_byte_is_a_mismatch_and_fails_the_run() {
    let (ok, report) = against(tcp_server(corrupting), &[]);
    assert!(!ok, "exit status must be non-zero");
    assert_eq!(
        report.errors.mismatch, 4,
        "one per connection: {:?}",
        report.errors
    );
    assert_eq!(report.errors.total(), 4);
    assert!(
        report.error_examples[0].contains("byte 100"),
        "{:?}",
        report.error_examples
    );
}

#[test]
fn a_reset_is_reported_as_a_reset() {
    let (ok, report) = against(tcp_server(resetting), &[]);
    assert!(!ok);
    assert_eq!(
        report.errors.reset, 4,
        "{:?} {:?}",
        report.errors, report.error_examples
    );
    assert_eq!(report.errors.total(), 4);
}

#[test]
fn a_stalled_server_is_a_timeout() {
    let (ok, report) = against(tcp_server(stalling), &["--timeout", "300ms"]);
    assert!(!ok);
    assert_eq!(report.errors.timeout, 4, "{:?}", report.errors);
    assert_eq!(report.errors.total(), 4);
    assert_eq!(report.messages, 0);
}

#[test]
fn a_refused_connection_is_a_connect_error() {
    // Bind and drop: nothing listens on this port any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (ok, report) = against(addr, &[]);
    assert!(!ok);
    assert_eq!(report.errors.connect, 4, "{:?}", report.errors);
}

#[test]
fn the_clients_own_fd_limit_is_named_as_such() {
    let out = loadgen(&["127.0.0.1:9", "-c", "2M", "-d", "1s"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("client limit"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn bad_arguments_are_one_line_and_status_2() {
    let out = loadgen(&["127.0.0.1:9", "-d", "3 days"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn open_loop_reports_both_latencies() {
    let dir = server_dir();
    let server = RunningServer::start(&dir.join("echo-poll"), &[], &Listen::Tcp, None).unwrap();
    let workload = Workload {
        rate: Some(2000.0),
        ..short(server.target.clone(), 10)
    };
    let report = run(&workload, Some(server.pid));
    assert!(server.stop().exit_ok);
    assert_eq!(report.errors.total(), 0, "{:?}", report.error_examples);
    // 2000/s over 0.6 s: about 1200 messages, whatever the server's speed (closed loop would
    // complete ten times as many). Loose bounds: the tests share two cores.
    assert!(
        (600..=1500).contains(&report.messages),
        "{}",
        report.messages
    );
    let unc = report
        .latency_uncorrected
        .expect("open loop keeps the uncorrected figure");
    assert!(unc.count > 0 && report.latency.count == unc.count);
}

#[test]
fn compare_on_a_tiny_workload_writes_table_files_and_charts() {
    let dir = server_dir();
    let out_dir = tempfile::tempdir().unwrap();
    let out = loadgen(&[
        "compare",
        "--models",
        "epoll-lt,poll",
        "-c",
        "10",
        "-d",
        "300ms",
        "--warmup",
        "100ms",
        "--bin-dir",
        dir.to_str().unwrap(),
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().next().unwrap().starts_with("model"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("epoll-lt ")),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l.starts_with("poll ")), "{stdout}");
    assert!(stdout.contains(&out_dir.path().display().to_string()));
    let reports: Vec<RunReport> = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports
        .iter()
        .all(|r| r.status == "ok" && r.server.is_some()));
    assert!(
        reports
            .iter()
            .all(|r| r.environment.client_core != r.environment.server_core
                || r.environment.cores < 2)
    );
    let csv_text = std::fs::read_to_string(out_dir.path().join("results.csv")).unwrap();
    assert_eq!(
        csv::Reader::from_reader(csv_text.as_bytes())
            .records()
            .count(),
        2
    );
    for chart in ["throughput.svg", "p99.svg", "cpu-per-msg.svg"] {
        let svg = std::fs::read_to_string(out_dir.path().join(chart)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("epoll-lt"),
            "{chart}"
        );
    }
}

#[test]
fn sweep_says_when_select_hits_fd_setsize() {
    let dir = server_dir();
    let out_dir = tempfile::tempdir().unwrap();
    let out = loadgen(&[
        "sweep",
        "--idle",
        "0,1100",
        "-c",
        "5",
        "--models",
        "select",
        "-d",
        "300ms",
        "--warmup",
        "100ms",
        "--bin-dir",
        dir.to_str().unwrap(),
        "--out",
        out_dir.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    let reports: Vec<RunReport> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].status, "ok");
    assert_eq!(
        reports[1].status, "fd limit (FD_SETSIZE)",
        "{:?}",
        reports[1].note
    );
    assert!(
        reports[1].messages > 0,
        "the active connections still carry load"
    );
    assert!(
        out.status.success(),
        "an FD_SETSIZE refusal is reported, not a failure"
    );
    assert!(out_dir.path().join("sweep-throughput.svg").exists());
}

#[test]
fn http_mode_counts_requests_and_body_bytes() {
    let addr = http_server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789");
    let url = format!("http://{addr}/file");
    let pid = std::process::id().to_string();
    let out = loadgen(&[
        "http",
        &url,
        "-c",
        "4",
        "-d",
        "400ms",
        "--warmup",
        "100ms",
        "--format",
        "json",
        "--server-pid",
        &pid,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<RunReport> = serde_json::from_slice(&out.stdout).unwrap();
    let r = &reports[0];
    assert_eq!(r.errors.total(), 0, "{:?}", r.error_examples);
    assert!(r.messages > 0);
    assert!((r.mb_per_s * 1e6 * r.window_s - 10.0 * r.messages as f64).abs() < 1.0);
    assert!(r.server.as_ref().unwrap().cpu_ms_per_gib > 0.0);

    let table = loadgen(&["http", &url, "-c", "2", "-d", "200ms", "--warmup", "0s"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("requests/s"));

    let missing = http_server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    let out = loadgen(&[
        "http",
        &format!("http://{missing}/nope"),
        "-c",
        "2",
        "-d",
        "200ms",
        "--warmup",
        "0s",
        "--format",
        "json",
    ]);
    assert!(!out.status.success());
    let reports: Vec<RunReport> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports[0].errors.http, 2);
}

/// Bytes echoed by [`counting_echo`], all connections together.
static ECHOED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Echoes, counting the bytes it sends back.
fn counting_echo(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            return;
        }
        ECHOED.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reads the server's count at the window's edges, as `loadgen` samples /proc there.
#[derive(Default)]
struct EchoedAtEdges {
    start: u64,
    end: u64,
}

impl netlab_loadgen::engine::Window for EchoedAtEdges {
    fn measure_start(&mut self) {
        self.start = ECHOED.load(std::sync::atomic::Ordering::Relaxed);
    }
    fn measure_end(&mut self) {
        self.end = ECHOED.load(std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn only_the_messages_of_the_measured_window_count() {
    // A warmup twice the window: had the warmup's messages been counted, the engine would
    // report about three times what the server echoed between the window's edges.
    let workload = Workload {
        connections: 4,
        warmup: Duration::from_secs(1),
        duration: Duration::from_millis(500),
        ..Workload::echo(Target::Tcp(tcp_server(counting_echo)))
    };
    let mut edges = EchoedAtEdges::default();
    let result = netlab_loadgen::engine::run(&workload, &mut edges).unwrap();
    assert_eq!(result.errors.total(), 0, "{:?}", result.examples);
    let in_window = (edges.end - edges.start) / workload.size as u64;
    assert!(in_window > 100, "too few messages to compare: {in_window}");
    // The edges are read by another thread a little after the engine's own clock passes
    // them (and the tests share two cores): wide bounds, far from the factor 3 of a bug.
    let ratio = result.messages as f64 / in_window as f64;
    assert!(
        (0.6..1.6).contains(&ratio),
        "engine counted {} messages, the server echoed {in_window} in the window",
        result.messages
    );
}
