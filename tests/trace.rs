//! The strace stepper (crates/netlab-trace), run on every model: each step is there and holds
//! the calls that define it for that model. Only which calls appear is asserted (strace changes
//! timing: how many waits a large message takes is the scheduler's business), except where a
//! model is defined by an absence (no EPOLL_CTL_MOD under edge-triggered, no recvfrom for
//! io_uring). A few models run several times to show the step boundaries are stable, and one
//! test drives the interactive mode through a pseudo-terminal.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use netlab_trace::lines::Line;
use netlab_trace::models::{self, Protocol};
use netlab_trace::session::{Options, Session, Step};
use netlab_trace::{steps, Cli, Terminal};

/// The test build's binaries.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_echo-epoll-et"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every step of the model's "all" scenario.
fn run_all(name: &str) -> Vec<Step> {
    let model = models::find(name).unwrap();
    let scenario = steps::scenario("all", model.protocol).unwrap();
    let options = Options { timestamps: false };
    let (mut session, start) = Session::start(model, &bin_dir(), options)
        .unwrap_or_else(|e| panic!("{name}: start: {e:#} (is strace installed?)"));
    let mut out = vec![start];
    for action in &scenario.steps[1..] {
        let step = session
            .run(*action)
            .unwrap_or_else(|e| panic!("{name}: {}: {e:#}", action.id()));
        out.push(step);
    }
    let ids: Vec<&str> = out.iter().map(|s| s.id).collect();
    let want: Vec<&str> = scenario.steps.iter().map(|a| a.id()).collect();
    assert_eq!(ids, want, "{name}: every step, in order");
    let last = out.last().unwrap();
    assert!(
        last.stopped
            .as_deref()
            .is_some_and(|l| l.starts_with("stopped ")),
        "{name}: no stopped line: {:?}",
        last.stopped
    );
    out
}

fn step<'a>(steps: &'a [Step], id: &str) -> &'a Step {
    steps.iter().find(|s| s.id == id).unwrap()
}

fn lines(step: &Step) -> impl Iterator<Item = &Line> {
    step.lines.iter().flat_map(|b| b.lines.iter())
}

/// Does the step hold a call named `name` whose text contains `part`?
fn has(step: &Step, name: &str, part: &str) -> bool {
    lines(step).any(|l| l.name == name && l.text.contains(part))
}

fn show(step: &Step) -> String {
    lines(step)
        .map(|l| l.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
fn assert_has(steps: &[Step], id: &str, name: &str, part: &str) {
    let s = step(steps, id);
    assert!(
        has(s, name, part),
        "step {id}: no {name}(...{part}...):\n{}",
        show(s)
    );
}

/// Facts every echo model shares: the start step ends in the first wait, the connect step
/// makes the server act, and the line comes back.
fn assert_echo_basics(name: &str, steps: &[Step]) {
    let start = step(steps, "start");
    assert!(has(start, "listen", ""), "{name}: start without listen");
    assert!(!start.waits_in.is_empty(), "{name}: start ends in a wait");
    for id in [
        "connect",
        "send-line",
        "send-large",
        "read-rest",
        "half-close",
    ] {
        assert!(
            !step(steps, id).lines.is_empty(),
            "{name}: step {id} shows nothing"
        );
    }
    assert_eq!(step(steps, "send-line").client_sent, 6);
    assert_eq!(step(steps, "read-echo").client_received, 6);
    assert_has(steps, "sigusr1", "SIGUSR1", "");
    assert_has(steps, "sigterm", "SIGTERM", "");
}

#[test]
fn epoll_lt_modifies_interest_for_the_large_message() {
    let s = run_all("epoll-lt");
    assert_echo_basics("epoll-lt", &s);
    assert_has(&s, "connect", "accept4", "SOCK_NONBLOCK");
    assert_has(&s, "connect", "epoll_ctl", "EPOLL_CTL_ADD");
    assert_has(&s, "send-line", "epoll_wait", "");
    assert_has(&s, "send-large", "sendto", "EAGAIN");
    assert_has(&s, "send-large", "epoll_ctl", "EPOLL_CTL_MOD");
    assert!(s.iter().all(|st| !has(st, "epoll_ctl", "EPOLLET")));
}

#[test]
fn epoll_et_stops_at_a_short_read_and_never_modifies() {
    let s = run_all("epoll-et");
    assert_echo_basics("epoll-et", &s);
    assert_has(
        &s,
        "connect",
        "epoll_ctl",
        "EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET",
    );
    // "hello\n" is a short read (6 of 65536 bytes): the loop stops there, no EAGAIN read.
    let line = step(&s, "send-line");
    assert!(has(line, "recvfrom", "= 6"), "{}", show(line));
    assert!(
        !lines(line).any(|l| l.name == "recvfrom"
            && l.text.contains(", 65536,")
            && l.result.contains("EAGAIN")),
        "a recvfrom = -1 EAGAIN after the short read:\n{}",
        show(line)
    );
    for st in &s {
        assert!(
            !has(st, "epoll_ctl", "EPOLL_CTL_MOD"),
            "step {}: EPOLL_CTL_MOD under ET",
            st.id
        );
    }
}

#[test]
fn epoll_et_drain_reads_to_eagain_and_never_modifies() {
    let s = run_all("epoll-et-drain");
    assert_echo_basics("epoll-et-drain", &s);
    assert_has(&s, "connect", "epoll_ctl", "EPOLLIN|EPOLLOUT|EPOLLET");
    assert_has(&s, "connect", "accept4", "EAGAIN");
    // The draining read on the client socket (the self-pipe's reads use a 64-byte buffer).
    let drained = |st: &Step| {
        lines(st).any(|l| {
            l.name == "recvfrom" && l.text.contains(", 65536,") && l.result.contains("EAGAIN")
        })
    };
    assert!(
        drained(step(&s, "send-line")) || drained(step(&s, "send-large")),
        "no recvfrom = -1 EAGAIN on the client:\n{}",
        show(step(&s, "send-large"))
    );
    for st in &s {
        assert!(
            !has(st, "epoll_ctl", "EPOLL_CTL_MOD"),
            "step {}: EPOLL_CTL_MOD under ET",
            st.id
        );
    }
}

#[test]
fn mio_is_edge_triggered_epoll() {
    let s = run_all("mio");
    assert_echo_basics("mio", &s);
    assert_has(&s, "connect", "epoll_ctl", "EPOLLET");
    for st in &s {
        assert!(
            !has(st, "epoll_ctl", "EPOLL_CTL_MOD"),
            "step {}: EPOLL_CTL_MOD in mio",
            st.id
        );
    }
}

#[test]
fn select_calls_pselect6_in_every_step() {
    let s = run_all("select");
    assert_echo_basics("select", &s);
    for st in &s[1..] {
        if st.id == "read-echo" {
            assert!(
                st.lines.is_empty(),
                "the echo was sent a step before:\n{}",
                show(st)
            );
            continue;
        }
        assert!(
            has(st, "pselect6", ""),
            "step {} without pselect6:\n{}",
            st.id,
            show(st)
        );
    }
    assert_has(&s, "send-line", "pselect6", "(in [");
}

#[test]
fn poll_passes_the_whole_array() {
    let s = run_all("poll");
    assert_echo_basics("poll", &s);
    assert_has(&s, "connect", "poll", "revents=POLLIN");
    assert_has(&s, "send-large", "poll", "POLLOUT");
}

#[test]
fn uring_moves_client_bytes_without_recvfrom() {
    let s = run_all("uring");
    assert_echo_basics("uring", &s);
    assert!(has(step(&s, "start"), "io_uring_setup", ""));
    for id in [
        "connect",
        "send-line",
        "send-large",
        "read-rest",
        "second-client",
        "half-close",
        "reset",
    ] {
        let st = step(&s, id);
        assert!(
            !lines(st).any(|l| matches!(l.name.as_str(), "recvfrom" | "sendto" | "accept4")),
            "step {id}: client I/O outside io_uring:\n{}",
            show(st)
        );
    }
    assert_has(&s, "send-line", "io_uring_enter", "");
}

#[test]
fn fork_clones_a_child_per_client_and_reaps_it() {
    let s = run_all("fork");
    assert_echo_basics("fork", &s);
    assert_has(&s, "connect", "clone", "");
    assert_has(&s, "send-line", "recvfrom", "[pid ");
    assert_has(&s, "half-close", "exit_group", "");
    assert_has(&s, "half-close", "wait4", "WNOHANG");
}

#[test]
fn blocking_threads_clone_a_thread_per_client() {
    let s = run_all("blocking");
    assert_echo_basics("blocking", &s);
    assert_has(&s, "connect", "clone3", "");
    assert_has(&s, "second-client", "clone3", "");
    assert_has(&s, "send-line", "recvfrom", "[pid ");
    assert!(!has(step(&s, "connect"), "accept4", "SOCK_NONBLOCK"));
}

#[test]
fn iterative_leaves_the_second_client_waiting() {
    let s = run_all("iterative");
    assert_echo_basics("iterative", &s);
    assert!(!has(step(&s, "connect"), "clone3", ""));
    let second = step(&s, "second-client");
    assert!(
        second.lines.is_empty(),
        "busy with the first client:\n{}",
        show(second)
    );
    // Only when the first leaves is the second accepted.
    assert_has(&s, "half-close", "accept4", "");
}

#[test]
fn fileserve_sends_with_sendfile_or_copies() {
    for (name, body_call, absent) in [
        ("fileserve", "sendfile", "pread64"),
        ("fileserve-copy", "pread64", "sendfile"),
    ] {
        let s = run_all(name);
        assert_has(&s, "get-small", "openat2", "RESOLVE_BENEATH");
        assert_has(&s, "get-large", body_call, "");
        assert_has(&s, "get-large", "epoll_ctl", "EPOLLOUT");
        // (Not in the start step: the dynamic loader reads libraries with pread64.)
        assert!(
            s[1..].iter().all(|st| !has(st, absent, "")),
            "{name} used {absent}"
        );
        assert_has(&s, "not-modified", "sendto", "304");
        assert_has(&s, "range", "sendto", "206");
        assert_eq!(step(&s, "get-large").client_received, 4 << 20);
    }
}

#[test]
fn new_models_run_when_built() {
    // echo-tokio, echo-c, echo-reuseport: whichever is built runs every step.
    for model in models::MODELS
        .iter()
        .filter(|m| ["tokio", "c", "reuseport"].contains(&m.name))
    {
        if bin_dir().join(model.bin).is_file() && model.protocol == Protocol::Echo {
            let s = run_all(model.name);
            assert_echo_basics(model.name, &s);
        }
    }
}

/// Each thread's call shapes (numbers, strings and pids masked), per step, for the steps whose
/// calls do not depend on how the scheduler splits a large message or file. (Two threads' lines may
/// interleave differently; each thread's own do not.)
fn shapes(steps: &[Step]) -> Vec<(String, Vec<Vec<String>>)> {
    steps
        .iter()
        .filter(|s| !matches!(s.id, "send-large" | "read-rest" | "get-large"))
        .map(|s| (s.id.to_string(), s.threads.clone()))
        .collect()
}

#[test]
fn the_same_steps_give_the_same_lines() {
    for name in ["epoll-et", "blocking", "fork"] {
        let first = shapes(&run_all(name));
        for _ in 0..2 {
            assert_eq!(
                shapes(&run_all(name)),
                first,
                "{name}: steps differ between runs"
            );
        }
    }
}

/// Every model, five times (about two minutes): `cargo test --test trace -- --ignored`.
#[test]
#[ignore]
fn every_model_gives_the_same_lines_five_times() {
    for model in models::MODELS {
        // reuseport: which thread accepts a connection depends on a hash of the client's port.
        if !bin_dir().join(model.bin).is_file() || model.name == "reuseport" {
            continue;
        }
        let first = shapes(&run_all(model.name));
        for _ in 0..4 {
            assert_eq!(
                shapes(&run_all(model.name)),
                first,
                "{}: steps differ",
                model.name
            );
        }
    }
}

fn cli(args: &[&str]) -> Cli {
    let dir = bin_dir();
    let mut all = vec!["trace"];
    all.extend_from_slice(args);
    all.extend(["--bin-dir", dir.to_str().unwrap()]);
    Cli::parse_from(all)
}

fn run_to_string(args: &[&str]) -> anyhow::Result<String> {
    let mut input = std::io::empty();
    let mut input = BufReader::new(&mut input);
    let mut output = Vec::new();
    let mut term = Terminal {
        input: &mut input,
        output: &mut output,
        is_terminal: false,
        width: None,
    };
    netlab_trace::run(&cli(args), &mut term)?;
    Ok(String::from_utf8(output).unwrap())
}

#[test]
fn json_gives_the_steps_as_data() {
    let text = run_to_string(&["poll", "--scenario", "basic", "--format", "json"]).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let steps = doc["models"][0]["steps"].as_array().unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "start",
            "connect",
            "send-line",
            "read-echo",
            "half-close",
            "sigterm"
        ]
    );
    assert!(steps[2]["calls"]["poll"].as_u64().unwrap() >= 1);
}

#[test]
fn two_models_side_by_side() {
    let text = run_to_string(&[
        "select",
        "epoll-lt",
        "--scenario",
        "basic",
        "--layout",
        "columns",
    ])
    .unwrap();
    let header = text
        .lines()
        .find(|l| l.starts_with("== step 3/6 send-line"))
        .expect(&text);
    assert!(
        !header.contains('['),
        "one header for both models: {header}"
    );
    assert!(text.contains("[select]") && text.contains("[epoll-lt]"));
    assert!(
        text.lines()
            .any(|l| l.contains("pselect6(") && l.contains(" | ") && l.contains("epoll_wait(")),
        "{text}"
    );
}

#[test]
fn bad_input_is_one_clear_error() {
    let e = run_to_string(&["no-such-model"]).unwrap_err().to_string();
    assert!(e.contains("unknown model 'no-such-model'"), "{e}");
    let e = run_to_string(&["poll", "--scenario", "nope"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown scenario 'nope'"), "{e}");
    let e = run_to_string(&["poll", "fileserve"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("different protocols"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let mut input = BufReader::new(std::io::empty());
    let mut output = Vec::new();
    let mut term = Terminal {
        input: &mut input,
        output: &mut output,
        is_terminal: false,
        width: None,
    };
    let args = Cli::parse_from(["trace", "poll", "--bin-dir", empty.path().to_str().unwrap()]);
    let e = netlab_trace::run(&args, &mut term).unwrap_err().to_string();
    assert!(e.contains("is not built"), "{e}");
}

#[test]
fn a_server_that_cannot_start_shows_its_stderr() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("echo-poll");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'echo-poll: error: cannot listen' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let model = models::find("poll").unwrap();
    let started = Instant::now();
    let e = Session::start(model, dir.path(), Options { timestamps: false })
        .err()
        .expect("a server that exits at once is an error");
    let e = format!("{e:#}");
    assert!(
        e.contains("exited before listening") && e.contains("cannot listen"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");
}

#[test]
fn a_server_that_dies_mid_step_is_an_error_not_a_hang() {
    let model = models::find("epoll-lt").unwrap();
    let (mut session, _) =
        Session::start(model, &bin_dir(), Options { timestamps: false }).unwrap();
    session.run(steps::Action::Connect).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(session.server_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let started = Instant::now();
    let e = session
        .run(steps::Action::SendLine)
        .expect_err("a dead server is an error");
    assert!(format!("{e:#}").contains("died"), "{e:#}");
    assert!(started.elapsed() < Duration::from_secs(20), "no hang");
}

/// Waits until the screen shows `text` (or fails after 30 s).
fn wait_for(screen: &Arc<Mutex<String>>, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = screen.lock().unwrap().clone();
        if now.contains(text) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {text:?} on the screen:\n{now}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn interactive_on_a_terminal_enter_steps_and_q_quits() {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let screen = Arc::new(Mutex::new(String::new()));
    let keep = Arc::clone(&screen);
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            keep.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let args = cli(&["epoll-et"]);
    let stepper = std::thread::spawn(move || {
        use std::io::IsTerminal;
        let mut input = BufReader::new(slave.try_clone().unwrap());
        let mut output = slave.try_clone().unwrap();
        let mut term = Terminal {
            input: &mut input,
            output: &mut output,
            is_terminal: slave.is_terminal(),
            width: Some(100),
        };
        netlab_trace::run(&args, &mut term)
    });
    wait_for(&screen, "next: the server starts");
    master.write_all(b"\n").unwrap();
    let shown = wait_for(&screen, "next: a client connects");
    assert!(shown.contains("step 1/11 start"), "{shown}");
    assert!(shown.contains("\x1b["), "colour on a terminal");
    let pid: i32 = shown
        .split("the server is pid ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|p| p.parse().ok())
        .expect("the start step names the server's pid");
    master.write_all(b"\n").unwrap();
    let shown = wait_for(&screen, "next: the client sends one line");
    assert!(shown.contains("accept4("), "{shown}");
    assert!(shown.contains("-> "), "notes under the lines: {shown}");
    master.write_all(b"q\n").unwrap();
    stepper.join().unwrap().unwrap();
    let gone = !Path::new(&format!("/proc/{pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"));
    assert!(gone, "q stops the server (pid {pid})");
    assert!(
        !screen.lock().unwrap().contains("step 3/11"),
        "q ran no further step"
    );
}
