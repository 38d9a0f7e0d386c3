//! `--churn`: each connection connects, echoes one message and closes, again and again. Against
//! real echo servers it must run with zero errors; when the client runs out of ephemeral ports
//! (in a private network namespace with ten of them) it must say so as a client limit.

use std::process::Command;
use std::time::Duration;

mod common;

use common::server_dir;
use netlab_loadgen::engine::{self, NoWindow};
use netlab_loadgen::servers::{Listen, RunningServer};
use netlab_loadgen::{measure, Environment, MeasureOptions, RunReport, Target, Workload};

fn churn(target: Target) -> Workload {
    Workload {
        connections: 4,
        churn: true,
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(500),
        ..Workload::echo(target)
    }
}

#[test]
fn churn_against_two_servers_has_no_errors() {
    let dir = server_dir();
    for (bin, listen) in [
        ("echo-epoll-lt", Listen::Tcp),
        ("echo-poll", Listen::Tcp),
        (
            "echo-epoll-et",
            Listen::Unix(std::env::temp_dir().join(format!("churn-{}.sock", std::process::id()))),
        ),
    ] {
        let server = RunningServer::start(&dir.join(bin), &[], &listen, None).unwrap();
        let result = engine::run(&churn(server.target.clone()), &mut NoWindow).unwrap();
        let stopped = server.stop();
        assert_eq!(result.errors.total(), 0, "{bin}: {:?}", result.examples);
        assert_eq!(result.connect_errors.total(), 0, "{bin}");
        assert_eq!(
            result.connected, 4,
            "{bin}: the connect phase's connections"
        );
        assert!(
            result.connections_completed > 0,
            "{bin}: no connection completed"
        );
        assert_eq!(result.connections_completed, result.messages, "{bin}");
        assert_eq!(
            result.latency.len(),
            result.messages,
            "{bin}: one latency per life"
        );
        // A life includes its own handshake, so no life is shorter than the shortest
        // handshake (the connect histogram holds every life's handshake, and a few more).
        assert!(
            result.latency.min() >= result.connect.min(),
            "{bin}: shortest life {} ns, shortest handshake {} ns",
            result.latency.min(),
            result.connect.min()
        );
        // The server saw every connection: the 4 of the connect phase, those completed in the
        // window, and those of the warmup and the drain.
        assert!(stopped.exit_ok, "{bin}: {:?}", stopped.problems);
        assert!(
            stopped.count("connections") >= result.connections_completed + 4,
            "{bin}: server counted {} connections, client completed {}",
            stopped.count("connections"),
            result.connections_completed
        );
        assert_eq!(stopped.count("errors"), 0, "{bin}");
    }
}

/// The side that closes first keeps TIME_WAIT: loadgen closes each life after its echo, so the
/// sockets left are the client's (its remote port is the server's), one per life, and none of
/// the server's.
#[test]
fn churn_leaves_time_wait_on_the_client_side() {
    let dir = server_dir();
    let server = RunningServer::start(&dir.join("echo-epoll-lt"), &[], &Listen::Tcp, None).unwrap();
    let workload = churn(server.target.clone());
    let report = measure(
        &workload,
        MeasureOptions {
            label: "epoll-lt".into(),
            server_pid: Some(server.pid),
            syscalls: false,
            environment: Environment::detect(&workload),
        },
    )
    .unwrap();
    assert!(server.stop().exit_ok);
    let churn = report
        .churn
        .expect("a churn run reports its TIME_WAIT sockets");
    let client = churn.time_wait_client.expect("/proc/net/tcp is readable");
    assert!(churn.completed > 0);
    // Every life the client closed is in TIME_WAIT for 60 s, unless a later connect took its
    // port over (tcp_tw_reuse=2, the default, allows that on loopback): at least half remain.
    assert!(
        client * 2 >= churn.completed,
        "{client} client-side TIME_WAIT sockets for {} lives",
        churn.completed
    );
    assert_eq!(churn.time_wait_server, Some(0));
}

#[test]
fn churn_refuses_what_it_cannot_mean() {
    let loadgen = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["127.0.0.1:9", "--churn", "-R", "1k"][..],
        &["127.0.0.1:9", "--churn", "--pipeline", "4"],
        &["http", "http://127.0.0.1:9/", "--churn"],
    ] {
        let out = loadgen(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--churn"), "{args:?}: {stderr}");
    }
}

/// Inside a private network namespace (its own loopback and sysctls; the host's are never
/// touched): ten ephemeral ports and no TIME_WAIT reuse, an echo server on a port of this
/// project's range (private to the namespace), and a churn run that must use them up.
const OUT_OF_PORTS: &str = r#"
set -e
ip link set lo up
sysctl -qw net.ipv4.ip_local_port_range="40000 40009"
sysctl -qw net.ipv4.tcp_tw_reuse=0
"$1" --addr 127.0.0.1:17050 >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
n=0
until ss -ltn | grep -q ':17050 '; do
    sleep 0.05; n=$((n+1)); [ $n -lt 100 ] || exit 97
done
set +e
"$2" 127.0.0.1:17050 --churn -c 1 -d 1s --warmup 0s --format json
"#;

#[test]
fn running_out_of_ephemeral_ports_is_a_client_limit() {
    let dir = server_dir();
    let probe = Command::new("unshare").args(["--net", "true"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot make a network namespace here (unshare --net): {probe:?}");
        return;
    }
    let out = Command::new("timeout")
        .args([
            "30",
            "unshare",
            "--net",
            "--",
            "sh",
            "-c",
            OUT_OF_PORTS,
            "sh",
        ])
        .arg(dir.join("echo-poll"))
        .arg(env!("CARGO_BIN_EXE_loadgen"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a client limit fails the run: {stderr}"
    );
    let reports: Vec<RunReport> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {stderr}"));
    let r = &reports[0];
    assert_eq!(
        r.errors.client_limit, 1,
        "{:?} {:?}",
        r.errors, r.error_examples
    );
    assert_eq!(r.errors.total(), 1, "{:?}", r.error_examples);
    // Ten ports: one for the connect phase, at most nine lives before they run out.
    assert!((1..=9).contains(&r.messages), "{}", r.messages);
    let example = &r.error_examples[0];
    assert!(
        example.contains("client limit, not the server") && example.contains("EADDRNOTAVAIL"),
        "{example}"
    );
}
