//! # Lab 07: a zombie is a child that exited and was not waited for
//!
//! ```text
//! cargo run --release --bin zombie   # 3 children, 5 s to look at them with ps
//! cargo run --release --bin zombie -- --children 5 --hold 30
//! strace -f -e trace=clone,exit_group,wait4 ./target/release/zombie --hold 0
//! ```
//!
//! What to look for: the children exit at once, but they stay in the process table with state
//! `Z` (`<defunct>` in ps) and keep their pids, because the kernel keeps each one's exit status
//! until the parent asks for it with `wait4`. After `waitpid` they are gone from /proc.
//! A zombie holds no memory and no open files; it holds a pid and a slot in the table, which is
//! why a server that never waits eventually cannot fork (`EAGAIN`).

use std::time::Duration;

use clap::Parser;
use netlab_core::parse_args;
use netlab_core::process::{self, Pid};
use netlab_core::procfs;
use nix::sys::wait::{waitpid, WaitStatus};

/// Forks children that exit at once and shows them as zombies until they are reaped.
#[derive(Parser)]
#[command(name = "zombie", version)]
struct Cli {
    /// How many children to fork.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    children: u32,

    /// Seconds to pause while the zombies exist, so you can look at them with ps (0: no pause).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    hold: u64,
}

fn main() {
    let cli: Cli = parse_args();
    netlab_core::exit_on_error("zombie", run(cli));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let me = std::process::id() as i32;
    println!(
        "zombie: parent pid {me}, forking {} children that exit at once",
        cli.children
    );

    let mut children = Vec::new();
    for _ in 0..cli.children {
        children.push(process::fork_child(|| 0)?); // the child's whole life: exit(0)
    }

    // The children exit within microseconds; give them a moment to be scheduled at all.
    let all_zombies = process::eventually(Duration::from_secs(5), || {
        children.iter().all(|&pid| state(pid) == Some('Z'))
    });
    println!();
    println!("    PID   PPID  STATE   (from /proc/PID/stat, before any wait)");
    for &pid in &children {
        let stat = procfs::stat(pid.as_raw())?;
        println!("{:>7} {:>6}  {}", pid, stat.ppid, stat.state);
    }
    if !all_zombies {
        anyhow::bail!("not every child reached state Z within 5 s; see the table above");
    }
    println!();
    println!("They exited, yet they are still in the process table. See for yourself:");
    println!("  ps -o pid,ppid,stat,cmd --ppid {me}");
    if cli.hold > 0 {
        println!("(holding them for {} s)", cli.hold);
        std::thread::sleep(Duration::from_secs(cli.hold));
    }

    println!();
    for &pid in &children {
        reap(pid)?;
    }
    let gone = children.iter().filter(|&&pid| state(pid).is_none()).count();
    println!(
        "after waitpid: {gone} of {} are gone from /proc; zombies left: {}",
        children.len(),
        process::zombies_of(me)
    );
    if gone != children.len() {
        anyhow::bail!("a reaped child is still in /proc");
    }
    println!("observed: exited children stayed as zombies until waitpid collected them");
    Ok(())
}

/// `wait4(pid, ...)`: collects the child's exit status, which frees its process-table entry.
fn reap(pid: Pid) -> anyhow::Result<()> {
    match waitpid(pid, None)? {
        WaitStatus::Exited(pid, code) => println!("waitpid({pid}) -> exited with status {code}"),
        other => println!("waitpid({pid}) -> {other:?}"),
    }
    Ok(())
}

/// The process state letter from /proc, or None once the pid is gone.
fn state(pid: Pid) -> Option<char> {
    procfs::stat(pid.as_raw()).ok().map(|s| s.state)
}
