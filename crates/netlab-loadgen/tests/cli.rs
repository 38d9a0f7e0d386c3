//! The `loadgen` command line as a new user meets it: bad input is one line and exit 2, pointing
//! to the help of the command it is about; nothing listening is one line; a closed stdout ends
//! quietly. No echo server is built here: a refused port, or a small echo server in a thread.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};

mod common;

use common::{echo, tcp_server};

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen")
}

/// Asserts exit status 2 and exactly one line on stderr; returns that line.
fn refused(args: &[&str]) -> String {
    let out = loadgen(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    stderr
}

/// A port on which nothing listens (bound, then let go).
fn dead_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn negative_numbers_are_named_not_unexpected_arguments() {
    let target = dead_port().to_string();
    for flag in ["-c", "--idle", "-t", "--pipeline", "--server-pid", "-R"] {
        let line = refused(&[&target, flag, "-1"]);
        assert!(!line.contains("unexpected argument"), "{flag}: {line}");
        assert!(line.contains("'-1'"), "{flag}: {line}");
    }
    for flag in ["-d", "--warmup", "--timeout"] {
        let line = refused(&[&target, flag, "-1s"]);
        assert!(line.contains("'-1s' is not a duration"), "{flag}: {line}");
    }
    let line = refused(&["http", "http://127.0.0.1:9/", "-c", "-5"]);
    assert!(line.contains("non-negative"), "{line}");
    for flag in ["--idle", "-c", "--size"] {
        let line = refused(&["sweep", flag, "-1,5"]);
        assert!(
            line.contains("'-1'") && line.ends_with("see loadgen sweep --help\n"),
            "{flag}: {line}"
        );
    }
}

#[test]
fn rates_must_be_numbers_above_zero() {
    let target = dead_port().to_string();
    // Zero and NaN: zero used to mean 'as fast as handshakes go' without a word.
    for (flag, value, named) in [
        ("--connect-rate", "0", "--connect-rate"),
        ("-R", "0", "--rate"),
        ("-R", "nan", "--rate"),
    ] {
        let line = refused(&[&target, flag, value, "-d", "1s"]);
        assert!(line.contains(named), "{flag} {value}: {line}");
        assert!(
            line.contains("see loadgen --help"),
            "{flag} {value}: {line}"
        );
    }
    // The library refuses what the flags' parser lets through from other callers.
    use netlab_loadgen::{Target, Workload};
    for rate in [0.0, f64::NAN, f64::INFINITY] {
        let workload = Workload {
            connect_rate: Some(rate),
            ..Workload::echo(Target::Tcp(dead_port()))
        };
        let error = workload.check().unwrap_err().to_string();
        assert!(error.contains("--connect-rate"), "{rate}: {error}");
        let workload = Workload {
            rate: Some(rate),
            ..Workload::echo(Target::Tcp(dead_port()))
        };
        let error = workload.check().unwrap_err().to_string();
        assert!(error.contains("--rate"), "{rate}: {error}");
    }
}

#[test]
fn errors_point_to_the_help_of_their_command() {
    assert!(refused(&["--bogus"]).ends_with("see loadgen --help\n"));
    for command in ["compare", "sweep", "http"] {
        let line = refused(&[command, "--bogus"]);
        assert!(
            line.ends_with(&format!("see loadgen {command} --help\n")),
            "{line}"
        );
    }
}

#[test]
fn compare_refuses_a_bad_workload_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let out = out.to_str().unwrap();
    for bad in [["-c", "0"], ["--size", "1"]] {
        for command in ["compare", "sweep"] {
            // A bin dir that does not exist: had the check come after locating the servers,
            // the error would be about the servers.
            let line = refused(&[
                command,
                bad[0],
                bad[1],
                "--no-build",
                "--bin-dir",
                "/nonexistent",
                "--out",
                out,
            ]);
            assert!(
                line.contains(bad[0]) && line.contains(&format!("loadgen {command} --help")),
                "{line}"
            );
        }
    }
    assert!(!dir.path().join("report").exists(), "no report written");
}

#[test]
fn a_message_size_past_the_limit_is_refused_not_an_abort() {
    let target = dead_port().to_string();
    for size in ["4G", "65m"] {
        let line = refused(&[&target, "--size", size, "-d", "1s"]);
        assert!(
            line.contains("--size must be at most 64 MiB"),
            "{size}: {line}"
        );
    }
}

#[test]
fn a_sweep_of_two_lists_is_a_usage_error() {
    let line = refused(&["sweep", "--idle", "0,10", "-c", "1,2", "--no-build"]);
    assert!(
        line.contains("one dimension at a time") && line.contains("see loadgen sweep --help"),
        "{line}"
    );
}

#[test]
fn syscalls_without_a_pid_is_refused() {
    let target = dead_port().to_string();
    let line = refused(&[&target, "--syscalls", "-d", "1s"]);
    assert!(line.contains("--server-pid"), "{line}");
    let url = format!("http://{target}/");
    let line = refused(&["http", &url, "--syscalls", "-d", "1s"]);
    assert!(line.contains("see loadgen http --help"), "{line}");
}

#[test]
fn http_with_nothing_listening_is_one_line() {
    let url = format!("http://{}/file", dead_port());
    let out = loadgen(&["http", &url, "-c", "2", "-d", "1s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is the server running?"), "{stderr}");
    assert!(out.stdout.is_empty(), "no table of zeros");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let target = tcp_server(echo).to_string();
    for format in ["table", "json", "csv"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args([&target, "-c", "2", "-d", "200ms", "--warmup", "0s"])
            .args(["--format", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before loadgen writes a byte, as `| head -0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{format}: {stderr}");
        assert!(stderr.is_empty(), "{format}: quiet: {stderr}");
    }
}
