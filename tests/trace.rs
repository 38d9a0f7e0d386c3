//! The strace walkthrough, checked: `scripts/trace.sh` runs each server under strace for one
//! echo exchange, and the syscalls the lab READMEs point at must be there. Only which calls
//! appear is asserted, never how many waits or EAGAINs (strace changes timing).

use std::path::Path;
use std::process::Command;

/// Runs scripts/trace.sh for `server` (with the test build's binaries) and returns its output.
fn trace(server: &str, bin: &str, flags: &[&str]) -> String {
    let bin_dir = Path::new(bin).parent().unwrap();
    let output = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/trace.sh"))
        .arg(server)
        .args(flags)
        .env("NETLAB_BIN_DIR", bin_dir)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "trace.sh {server} failed ({}); is strace installed?\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("got 'hello' back"), "no echo:\n{stdout}");
    assert!(
        stdout.contains("server said: stopped model="),
        "no clean stop:\n{stdout}"
    );
    stdout
}

fn assert_shows(trace: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            trace.contains(needle),
            "expected `{needle}` in the trace:\n{trace}"
        );
    }
}

/// Edge-triggered: after the echo, the drain reads the client socket once more and hears EAGAIN
/// (fd 4 is the signal self-pipe, which is drained the same way and does not count).
fn assert_drains_to_eagain(trace: &str) {
    let drained = trace.lines().any(|l| {
        l.starts_with("recvfrom(") && !l.starts_with("recvfrom(4,") && l.contains("= -1 EAGAIN")
    });
    assert!(
        drained,
        "no draining recvfrom = -1 EAGAIN on the client socket:\n{trace}"
    );
}

#[test]
fn blocking_threads_clone_a_thread_per_client_and_block_in_recvfrom() {
    let t = trace("echo-blocking", env!("CARGO_BIN_EXE_echo-blocking"), &[]);
    assert_shows(
        &t,
        &[
            "SOCK_CLOEXEC) = ",
            "clone3(",
            "stack_size=0x1fff00",
            "] recvfrom(",
            "\"hello\\n\"",
        ],
    );
    assert!(
        !t.contains("SOCK_NONBLOCK"),
        "blocking server used a non-blocking socket:\n{t}"
    );
}

#[test]
fn blocking_iterative_serves_in_the_accepting_thread() {
    let t = trace(
        "echo-blocking",
        env!("CARGO_BIN_EXE_echo-blocking"),
        &["--mode", "iterative"],
    );
    // The first line after accept4 that touches the client comes from the main thread.
    assert!(
        t.lines()
            .any(|l| l.starts_with("recvfrom(") && l.contains("\"hello\\n\"")),
        "{t}"
    );
}

#[test]
fn select_passes_whole_fd_sets_through_pselect6() {
    let t = trace("echo-select", env!("CARGO_BIN_EXE_echo-select"), &[]);
    assert_shows(
        &t,
        &[
            "pselect6(",
            "= 1 (in [",
            "SOCK_CLOEXEC|SOCK_NONBLOCK",
            "recvfrom(",
            "sendto(",
        ],
    );
}

#[test]
fn poll_passes_the_whole_array() {
    let t = trace("echo-poll", env!("CARGO_BIN_EXE_echo-poll"), &[]);
    assert_shows(
        &t,
        &["poll([{fd=", "revents=POLLIN", "recvfrom(", "sendto("],
    );
}

#[test]
fn epoll_lt_registers_once_and_waits_on_the_ready_list() {
    let t = trace("echo-epoll-lt", env!("CARGO_BIN_EXE_echo-epoll-lt"), &[]);
    assert_shows(
        &t,
        &[
            "EPOLL_CTL_ADD",
            "{events=EPOLLIN, data={u32=",
            "epoll_wait(",
            "-1 EINTR",
            "recvfrom(",
        ],
    );
    assert!(
        !t.contains("EPOLLET"),
        "level-triggered server registered EPOLLET:\n{t}"
    );
}

#[test]
fn epoll_et_drains_until_eagain_and_never_modifies() {
    let t = trace(
        "echo-epoll-et",
        env!("CARGO_BIN_EXE_echo-epoll-et"),
        &["--drain-to-eagain"],
    );
    assert_shows(
        &t,
        &[
            "EPOLLIN|EPOLLOUT|EPOLLET",
            "accept4(3, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = -1 EAGAIN",
        ],
    );
    assert_drains_to_eagain(&t);
    assert!(
        !t.contains("EPOLL_CTL_MOD"),
        "edge-triggered server modified an interest:\n{t}"
    );
}

#[test]
fn mio_is_edge_triggered_epoll_underneath() {
    let t = trace(
        "echo-mio",
        env!("CARGO_BIN_EXE_echo-mio"),
        &["--drain-to-eagain"],
    );
    assert_shows(&t, &["EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET", "epoll_wait("]);
    assert_drains_to_eagain(&t);
    assert!(
        !t.contains("EPOLL_CTL_MOD"),
        "mio server modified an interest:\n{t}"
    );
}

#[test]
fn io_uring_does_the_socket_io_inside_io_uring_enter() {
    let t = trace("echo-uring", env!("CARGO_BIN_EXE_echo-uring"), &[]);
    assert_shows(
        &t,
        &[
            "io_uring_setup(",
            "io_uring_enter(",
            "IORING_ENTER_GETEVENTS",
        ],
    );
    // The client's bytes never pass through a traced syscall: no accept4, and recvfrom/sendto
    // only on the signal pipe (fds 4 to 8), never with the client's "hello".
    assert!(
        !t.contains("accept4("),
        "io_uring server called accept4:\n{t}"
    );
    assert!(
        !t.contains("\"hello\\n\""),
        "the echoed bytes appeared in a syscall:\n{t}"
    );
}

#[test]
fn fork_server_clones_a_child_and_reaps_it_after_eintr() {
    let t = trace("echo-fork", env!("CARGO_BIN_EXE_echo-fork"), &[]);
    // fork(2) is clone() in strace; the child echoes; SIGCHLD interrupts the parent's accept4,
    // which then reaps with wait4(-1, ..., WNOHANG).
    assert_shows(
        &t,
        &[
            "clone(",
            "] recvfrom(",
            "] exit_group(0)",
            "= -1 EINTR",
            "wait4(-1,",
            "WNOHANG",
        ],
    );
}
