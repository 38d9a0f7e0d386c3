//! # Lab 07: an orphan is adopted
//!
//! ```text
//! cargo run --release --bin orphan                  # adopted by init, or by whatever subreaper is above us
//! cargo run --release --bin orphan -- --subreaper   # this demo is the subreaper: it adopts its grandchild
//! strace -f -e trace=clone,prctl,exit_group,wait4 ./target/release/orphan --subreaper
//! ```
//!
//! Three processes: this demo (the top), a parent it forks, and that parent's child. The parent
//! exits while the child still runs. The child asks `getppid()` before and after: the kernel has
//! given it a new parent, because every process must have one to collect its exit status.
//!
//! The new parent is the nearest ancestor that called `prctl(PR_SET_CHILD_SUBREAPER)`, or else
//! init of the pid namespace (pid 1). Which one that is depends on where you run it: a desktop
//! session often has `systemd --user` as a subreaper, a container has its own pid 1, and a test
//! harness may be anything. `--subreaper` makes the top process the subreaper, so the answer is
//! known in advance and the top can even `waitpid` a grandchild it never forked.

use std::fs::File;
use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use netlab_core::parse_args;
use netlab_core::process::{self, Pid};
use netlab_core::procfs;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{getpid, getppid};

/// The parent exits while its child runs; the child reports who adopted it.
#[derive(Parser)]
#[command(name = "orphan", version)]
struct Cli {
    /// Make this demo a child subreaper (PR_SET_CHILD_SUBREAPER): the orphan is adopted by it.
    #[arg(long)]
    subreaper: bool,
}

fn main() {
    let cli: Cli = parse_args();
    netlab_core::exit_on_error("orphan", run(cli));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let top = getpid();
    if cli.subreaper {
        nix::sys::prctl::set_child_subreaper(true).context("prctl(PR_SET_CHILD_SUBREAPER)")?;
        println!("top {top}: I am a child subreaper now: orphans below me come to me");
    } else {
        println!("top {top}: no subreaper set by this demo");
    }

    // The orphan writes "its-pid parent-before parent-after" here, and its exit closes the pipe.
    let (mut report_read, report_write) = pipe()?;
    let parent = process::fork_child(|| parent(&report_write))?;
    drop(report_write); // only the orphan's copy is left: EOF means it has exited

    let status = waitpid(parent, None)?;
    println!("top {top}: waitpid({parent}) -> {}", describe(status));
    let mut report = String::new();
    report_read.read_to_string(&mut report)?;
    let [orphan, before, after] = parse_report(&report)?;
    let (orphan, after) = (Pid::from_raw(orphan), Pid::from_raw(after));

    println!();
    println!("orphan {orphan}: parent before = {before}, after its parent exited = {after}");
    if before != parent.as_raw() || after == parent {
        bail!("the orphan's parent did not change from {parent} (saw {before} then {after})");
    }
    if cli.subreaper {
        adopted_by_us(top, orphan, after)
    } else {
        adopted_by_someone(top, orphan, after)
    }
}

/// The middle process: forks the child, waits until the child has seen its parent, exits.
fn parent(report: &File) -> i32 {
    let me = getpid();
    let Ok((mut ready_read, ready_write)) = pipe() else {
        return 1;
    };
    let Ok(child) = process::fork_child(|| orphan(report, &ready_write)) else {
        return 1;
    };
    drop(ready_write);
    // Wait for the child's "I have looked" byte, so it sees us before we are gone.
    let _ = ready_read.read(&mut [0u8; 1]);
    println!("parent {me}: exiting while my child {child} still runs");
    0
}

/// The grandchild: reports its parent, waits for it to die, reports the new one.
fn orphan(mut report: &File, mut ready: &File) -> i32 {
    let me = getpid();
    let before = getppid();
    println!("child {me}: my parent is {before} ({})", name(before));
    let _ = ready.write_all(b"x");

    if !process::eventually(Duration::from_secs(5), || getppid() != before) {
        println!("child {me}: my parent {before} did not exit within 5 s");
        return 1;
    }
    let after = getppid();
    println!("child {me}: my parent is now {after} ({})", name(after));
    let line = format!("{me} {before} {after}\n");
    i32::from(report.write_all(line.as_bytes()).is_err())
}

/// --subreaper: the orphan must be ours now, and we can collect its exit status.
fn adopted_by_us(top: Pid, orphan: Pid, after: Pid) -> anyhow::Result<()> {
    if after != top {
        bail!("expected this demo ({top}) to adopt the orphan, but its parent became {after}");
    }
    // We never forked it, yet it is our child now: waitpid works on it.
    let status = waitpid(orphan, None)?;
    println!(
        "top {top}: waitpid({orphan}) -> {}  (a grandchild, reaped by its subreaper)",
        describe(status)
    );
    if !matches!(status, WaitStatus::Exited(_, 0)) {
        bail!("the orphan did not exit cleanly: {status:?}");
    }
    println!("observed: the orphan was adopted by the subreaper {top} (this demo)");
    Ok(())
}

/// No subreaper of ours: say who adopted the orphan, and check it is init or one of our
/// ancestors (the only processes the kernel may choose).
fn adopted_by_someone(top: Pid, orphan: Pid, after: Pid) -> anyhow::Result<()> {
    let ancestors = ancestors_of(top);
    let who = if after.as_raw() == 1 {
        "pid 1, init of this pid namespace".to_string()
    } else if ancestors.contains(&after.as_raw()) {
        let hops = ancestors
            .iter()
            .position(|&p| p == after.as_raw())
            .unwrap_or(0)
            + 1;
        format!("an ancestor of this demo ({hops} level(s) up) that is a child subreaper")
    } else {
        bail!("the orphan was adopted by {after}, which is neither init nor an ancestor of {top}");
    };
    println!("top {top}: adopter {after} ({}) is {who}", name(after));
    match waitpid(orphan, None) {
        Ok(status) => println!("top {top}: waitpid({orphan}) -> {}", describe(status)),
        Err(e) => println!("top {top}: waitpid({orphan}) -> {e}  (not our child any more)"),
    }

    // Its exit status now belongs to the adopter; a good init reaps it at once.
    if process::eventually(Duration::from_secs(2), || {
        procfs::stat(orphan.as_raw()).is_err()
    }) {
        println!("top {top}: the orphan has exited and its adopter reaped it");
    } else {
        println!("top {top}: the orphan is still in /proc: its adopter {after} has not reaped it");
    }
    println!(
        "observed: the orphan was adopted by {after} ({})",
        name(after)
    );
    Ok(())
}

/// The parent, grandparent, ... of `pid`, nearest first, as /proc tells them.
fn ancestors_of(pid: Pid) -> Vec<i32> {
    let mut chain = Vec::new();
    let mut current = pid.as_raw();
    while let Ok(stat) = procfs::stat(current) {
        if stat.ppid == 0 || chain.contains(&stat.ppid) {
            break;
        }
        chain.push(stat.ppid);
        current = stat.ppid;
    }
    chain
}

/// `pipe2(O_CLOEXEC)`, both ends as files.
fn pipe() -> std::io::Result<(File, File)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((File::from(read), File::from(write)))
}

fn parse_report(report: &str) -> anyhow::Result<[i32; 3]> {
    let numbers: Vec<i32> = report
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    numbers
        .try_into()
        .map_err(|_| anyhow::anyhow!("the orphan sent no report (it printed why above)"))
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        other => format!("{other:?}"),
    }
}

fn name(pid: Pid) -> String {
    process::command_name(pid.as_raw())
}
