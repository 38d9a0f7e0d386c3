//! The process labs: every demo runs and says it saw what it set out to show, and the
//! fork-per-connection echo server reaps (or, with `--reap none`, does not reap) its children
//! and leaks no descriptors.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use netlab_core::process::{children_of, eventually, zombies_of};
use netlab_core::procfs;

fn run_demo(bin: &str, args: &[&str]) -> Output {
    let output = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{bin} {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("observed:"), "{bin}: no verdict:\n{stdout}");
    output
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn zombie_shows_each_child_in_state_z_then_reaps_them() {
    let out = stdout_of(&run_demo(
        env!("CARGO_BIN_EXE_zombie"),
        &["--children", "4", "--hold", "0"],
    ));
    let zombie_rows = out
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("Z"))
        .count();
    assert_eq!(zombie_rows, 4, "{out}");
    assert_eq!(out.matches("exited with status 0").count(), 4, "{out}");
    assert!(out.contains("4 of 4 are gone"), "{out}");
    assert!(out.contains("ps -o pid,ppid,stat,cmd --ppid"), "{out}");
}

#[test]
fn orphan_is_adopted_by_init_or_an_ancestor() {
    let out = stdout_of(&run_demo(env!("CARGO_BIN_EXE_orphan"), &[]));
    assert!(out.contains("my parent is now"), "{out}");
}

#[test]
fn orphan_is_adopted_by_the_demo_when_it_is_a_subreaper() {
    let out = stdout_of(&run_demo(env!("CARGO_BIN_EXE_orphan"), &["--subreaper"]));
    assert!(out.contains("adopted by the subreaper"), "{out}");
    assert!(out.contains("reaped by its subreaper"), "{out}");
}

#[test]
fn reaper_counts_the_zombies_each_strategy_leaves() {
    let out = stdout_of(&run_demo(
        env!("CARGO_BIN_EXE_reaper"),
        &["--children", "12"],
    ));
    let zombies = |strategy: &str| -> usize {
        let row = out
            .lines()
            .find(|l| l.starts_with(strategy))
            .unwrap_or_else(|| panic!("no row for {strategy}:\n{out}"));
        row.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert_eq!(zombies("none"), 12, "{out}");
    let lost = zombies("wait per SIGCHLD");
    assert!(lost > 0 && lost < 12, "{out}");
    for strategy in [
        "waitpid loop",
        "SIGCHLD ignored",
        "SA_NOCLDWAIT",
        "double fork",
    ] {
        assert_eq!(zombies(strategy), 0, "{strategy}:\n{out}");
    }
}

#[test]
fn unlinked_file_keeps_its_space_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    let out = stdout_of(&run_demo(
        env!("CARGO_BIN_EXE_unlinked"),
        &["--dir", dir.path().to_str().unwrap(), "--size", "32MiB"],
    ));
    assert!(out.contains("fstat st_nlink:             0"), "{out}");
    assert!(out.contains(" (deleted)"), "{out}");
    // The demo removes its own file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn unlinked_names_its_pid_only_while_the_file_can_still_be_seen() {
    // Without --hold the demo is gone a moment after the hint: no command naming its pid.
    // (32 MiB, as above: the demo checks free space, which other writers move too.)
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let quick = stdout_of(&run_demo(
        env!("CARGO_BIN_EXE_unlinked"),
        &["--dir", dir_arg, "--size", "32MiB"],
    ));
    let hint = quick.lines().find(|l| l.starts_with("see it yourself:"));
    assert_eq!(
        hint.map(|l| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" ")),
        Some("run with --hold 30, then ls or lsof it".into()),
        "{quick}"
    );

    // With --hold the printed lsof command, run during the hold, shows exactly the deleted file.
    let mut demo = Command::new(env!("CARGO_BIN_EXE_unlinked"))
        .args(["--dir", dir_arg, "--size", "32MiB", "--hold", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = demo.id();
    let mut stdout = BufReader::new(demo.stdout.take().unwrap());
    let mut seen = String::new();
    let command = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no hint:\n{seen}");
        seen.push_str(&line);
        if let Some((_, command)) = line.split_once(" or ") {
            break command.trim().to_string();
        }
    };
    assert_eq!(command, format!("lsof -a +L1 -p {pid}"), "{seen}");
    let lsof = Command::new("lsof")
        .args(command.split_whitespace().skip(1))
        .output()
        .expect("lsof is installed by scripts/setup.sh");
    let rows = String::from_utf8_lossy(&lsof.stdout).into_owned();
    let files: Vec<&str> = rows.lines().skip(1).collect(); // the first line is lsof's header
    let name = format!("netlab-unlinked-{pid}.dat (deleted)");
    assert_eq!(files.len(), 1, "{command}:\n{rows}");
    assert!(files[0].ends_with(&name), "{command}:\n{rows}");
    stdout.read_to_string(&mut seen).unwrap();
    assert!(demo.wait().unwrap().success(), "{seen}");
    assert!(seen.contains("observed:"), "{seen}");
}

#[test]
fn demos_reject_bad_input_in_one_line_and_have_help() {
    for (bin, bad) in [
        (env!("CARGO_BIN_EXE_zombie"), "--children=0"),
        (env!("CARGO_BIN_EXE_orphan"), "--frobnicate"),
        (env!("CARGO_BIN_EXE_reaper"), "--children=x"),
        (env!("CARGO_BIN_EXE_unlinked"), "--size=12q"),
        (env!("CARGO_BIN_EXE_echo-fork"), "--reap=sometimes"),
    ] {
        common::assert_bad_input_is_one_line_and_help_works(bin, bad);
    }
    let missing = Command::new(env!("CARGO_BIN_EXE_unlinked"))
        .args(["--dir", "/nonexistent/netlab"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).starts_with("unlinked: error:"));
}

/// A running echo-fork; killed and waited for when dropped, so no test leaves it behind.
struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
    pid: i32,
    addr: SocketAddr,
}

impl Server {
    fn start(reap: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_echo-fork"))
            .args(["--addr", "127.0.0.1:0", "--reap", reap])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn echo-fork");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        // listening on 127.0.0.1:PORT pid=N model=fork
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.get(..2), Some(&["listening", "on"][..]), "{line}");
        assert_eq!(words.last(), Some(&"model=fork"), "{line}");
        let addr = words[2].parse().unwrap();
        let pid = words[3].strip_prefix("pid=").unwrap().parse().unwrap();
        assert_eq!(pid, child.id() as i32);
        Server {
            child,
            stdout,
            pid,
            addr,
        }
    }

    /// The parent's descriptors once it is settled in `accept4`: after one client has been
    /// served (its child is done), so nothing from start-up (the "listening" line comes before
    /// the server reads /proc/sys/net/core/somaxconn) is still open. Leaves one finished child.
    fn settled_fds(&self) -> Vec<String> {
        assert_eq!(echo_once(self.addr, b"warm-up\n"), b"warm-up\n");
        let child_done = eventually(Duration::from_secs(5), || {
            children_of(self.pid).iter().all(|c| c.state == 'Z')
        });
        assert!(child_done);
        self.open_fds()
    }

    /// The parent's open descriptors, as `fd -> target` lines (so a failure shows which).
    fn open_fds(&self) -> Vec<String> {
        let count = procfs::open_fds(self.pid).unwrap();
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                Some(format!(
                    "{} -> {}",
                    e.file_name().to_string_lossy(),
                    target.display()
                ))
            })
            .collect();
        fds.sort();
        assert_eq!(
            fds.len(),
            count,
            "descriptors changed while listing them: {fds:?}"
        );
        fds
    }

    /// SIGTERM; returns the "stopped" line, after checking it exits 0 promptly.
    fn stop(mut self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "echo-fork did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "{status}");
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        rest.lines()
            .find(|l| l.starts_with("stopped model=fork"))
            .unwrap_or_else(|| panic!("no stopped line in {rest:?}"))
            .to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client: send `message`, half-close, read the echo to end of file.
fn echo_once(addr: SocketAddr, message: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(message).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    back
}

/// `clients` clients at once, each with its own message; checks every echo.
fn concurrent_clients(addr: SocketAddr, clients: usize) {
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            std::thread::spawn(move || {
                let message = format!("client {i}: {}\n", "x".repeat(i * 100)).into_bytes();
                assert_eq!(echo_once(addr, &message), message);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
}

#[test]
fn fork_server_with_sigchld_reaping_leaves_no_zombies_and_no_fds() {
    let server = Server::start("sigchld");
    let baseline = server.settled_fds();
    assert!(baseline.len() >= 4, "{baseline:?}"); // stdio and the listener at least
    concurrent_clients(server.addr, 40);
    let no_children = eventually(Duration::from_secs(5), || {
        children_of(server.pid).is_empty()
    });
    assert!(no_children, "left: {:?}", children_of(server.pid));
    assert_eq!(zombies_of(server.pid), 0);
    assert_eq!(server.open_fds(), baseline, "the parent leaked descriptors");
    let stopped = server.stop();
    assert_eq!(field(&stopped, "connections"), 41, "{stopped}"); // and the warm-up
    assert_eq!(field(&stopped, "errors"), 0, "{stopped}");
}

#[test]
fn fork_server_without_reaping_leaves_one_zombie_per_finished_client() {
    let server = Server::start("none");
    let baseline = server.settled_fds(); // leaves the warm-up client's zombie
    assert_eq!(zombies_of(server.pid), 1);
    concurrent_clients(server.addr, 25);
    // Each child exits as its client finishes; give the last ones a moment to get there.
    let all_exited = eventually(Duration::from_secs(5), || {
        children_of(server.pid).iter().all(|c| c.state == 'Z')
    });
    assert!(all_exited, "{:?}", children_of(server.pid));
    assert_eq!(zombies_of(server.pid), 26);
    assert_eq!(server.open_fds(), baseline, "the parent leaked descriptors");
    // Still serving, and the zombies stay until the server stops (then it reaps them all).
    concurrent_clients(server.addr, 5);
    assert!(eventually(Duration::from_secs(5), || zombies_of(
        server.pid
    ) == 31));
    let pid = server.pid;
    let stopped = server.stop();
    assert_eq!(field(&stopped, "connections"), 31, "{stopped}");
    assert!(children_of(pid).is_empty());
}

#[test]
fn sigchld_interrupting_accept_does_not_stop_the_server() {
    let server = Server::start("sigchld");
    // One client at a time: each child exits while the parent is blocked in accept4, so every
    // SIGCHLD lands there (EINTR).
    let mut expected_bytes = 0;
    for i in 0..60 {
        let message = format!("short client {i}\n").into_bytes();
        assert_eq!(echo_once(server.addr, &message), message);
        expected_bytes += message.len() as u64;
    }
    // Wait for the last children's SIGCHLD to have interrupted accept, then: still serving.
    assert!(eventually(Duration::from_secs(5), || children_of(
        server.pid
    )
    .is_empty()));
    concurrent_clients(server.addr, 10);
    expected_bytes += (0..10)
        .map(|i| format!("client {i}: {}\n", "x".repeat(i * 100)).len() as u64)
        .sum::<u64>();
    assert!(eventually(Duration::from_secs(5), || children_of(
        server.pid
    )
    .is_empty()));
    let stopped = server.stop();
    assert_eq!(field(&stopped, "connections"), 70, "{stopped}");
    // Every child reported its bytes to the parent through the pipe before exiting.
    assert_eq!(field(&stopped, "bytes"), expected_bytes, "{stopped}");
}

#[test]
fn fork_server_stops_its_busy_children_on_sigterm() {
    let server = Server::start("sigchld");
    let mut idle: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    for stream in &mut idle {
        stream.write_all(b"ping\n").unwrap();
        let mut back = [0u8; 5];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping\n");
    }
    let children: Vec<i32> = children_of(server.pid).iter().map(|c| c.pid).collect();
    assert_eq!(children.len(), 5);
    let stopped = server.stop();
    // Each child shut its connection down on SIGTERM and still reported its 5 bytes.
    assert_eq!(field(&stopped, "connections"), 5, "{stopped}");
    assert_eq!(field(&stopped, "bytes"), 25, "{stopped}");
    for pid in children {
        assert!(
            procfs::stat(pid).is_err(),
            "child {pid} outlived the server"
        );
    }
    for mut stream in idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut rest = Vec::new();
        // The child shut the connection down: end of file.
        stream
            .read_to_end(&mut rest)
            .expect("end of file, not an error");
        assert!(rest.is_empty());
    }
}
