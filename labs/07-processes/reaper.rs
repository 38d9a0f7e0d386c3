//! # Lab 07: the ways to reap children, side by side
//!
//! ```text
//! cargo run --release --bin reaper
//! cargo run --release --bin reaper -- --children 50
//! strace -f -e trace=wait4,rt_sigaction,rt_sigprocmask,exit_group ./target/release/reaper
//! ```
//!
//! Each strategy runs in a fresh sub-process, so their signal dispositions and children do not
//! mix. The sub-process forks N children that block on a pipe, then closes the pipe: every child
//! sees end of file at once and exits, a burst. It then counts its children still in state `Z`.
//!
//! | strategy             | what the parent does                           | zombies left |
//! |----------------------|------------------------------------------------|--------------|
//! | none                 | nothing                                        | all of them  |
//! | wait per SIGCHLD     | one `wait()` for each SIGCHLD that arrives     | all but one  |
//! | waitpid loop         | on SIGCHLD, `waitpid(-1, WNOHANG)` until none  | 0            |
//! | SIGCHLD ignored      | `signal(SIGCHLD, SIG_IGN)`: the kernel reaps   | 0            |
//! | SA_NOCLDWAIT         | a handler with SA_NOCLDWAIT: the kernel reaps  | 0            |
//! | double fork          | fork a middle that forks the worker and exits | 0            |
//!
//! The kernel fact behind the second row: a standard signal is a bit, not a counter. While
//! SIGCHLD is pending (blocked, or its handler still running), more children exiting set the
//! same bit again, so N exits can arrive as one signal. The demo blocks SIGCHLD during the
//! burst, as a busy handler would, so the merge is certain rather than likely.
//!
//! In the double fork, the worker's parent (the middle) is gone at once, so the worker is an
//! orphan: this demo makes itself a child subreaper, so the orphans come back to it and it reaps
//! them at the end (without that they would go to init).

use std::fs::File;
use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use netlab_core::parse_args;
use netlab_core::process::{self, Sigchld};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{wait, waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, Pid};

/// Runs each way of reaping under a burst of exiting children and counts the zombies left.
#[derive(Parser)]
#[command(name = "reaper", version)]
struct Cli {
    /// Children per strategy, all exiting together.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(2..=500))]
    children: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    None,
    WaitPerSignal,
    WaitpidLoop,
    IgnoreSigchld,
    NoCldWait,
    DoubleFork,
}

const STRATEGIES: [Strategy; 6] = [
    Strategy::None,
    Strategy::WaitPerSignal,
    Strategy::WaitpidLoop,
    Strategy::IgnoreSigchld,
    Strategy::NoCldWait,
    Strategy::DoubleFork,
];

/// What one strategy's sub-process saw.
struct Outcome {
    /// SIGCHLD deliveries the handler counted (None: no handler installed).
    signals: Option<usize>,
    zombies_left: usize,
    /// Orphans that came back to the top process (double fork only).
    adopted: usize,
}

fn main() {
    let cli: Cli = parse_args();
    netlab_core::exit_on_error("reaper", run(cli));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let n = cli.children as usize;
    nix::sys::prctl::set_child_subreaper(true).context("prctl(PR_SET_CHILD_SUBREAPER)")?;
    println!(
        "reaper: pid {}, {n} children per strategy, all exiting at once",
        getpid()
    );
    println!();
    println!(
        "{:<18} {:>8} {:>18} {:>13}",
        "strategy", "children", "SIGCHLD delivered", "zombies left"
    );

    let mut failures = Vec::new();
    for strategy in STRATEGIES {
        let outcome = run_isolated(strategy, n)?;
        let signals = outcome.signals.map_or("-".to_string(), |s| s.to_string());
        println!(
            "{:<18} {n:>8} {signals:>18} {:>13}",
            name(strategy),
            outcome.zombies_left
        );
        if strategy == Strategy::DoubleFork {
            let adopted = outcome.adopted;
            println!("  (its {adopted} workers were orphaned at once, came back to this demo, the");
            println!("   subreaper, and were reaped here)");
        }
        if let Some(problem) = check(strategy, n, &outcome) {
            failures.push(format!("{}: {problem}", name(strategy)));
        }
    }

    println!();
    if !failures.is_empty() {
        bail!("not as expected: {}", failures.join("; "));
    }
    println!(
        "observed: no reaping leaves every child a zombie; one wait per SIGCHLD loses children"
    );
    println!(
        "when signals merge; a WNOHANG loop, SIG_IGN, SA_NOCLDWAIT and a double fork leave none"
    );
    Ok(())
}

/// What each strategy should leave behind; `Some(reason)` when it did not.
fn check(strategy: Strategy, n: usize, outcome: &Outcome) -> Option<String> {
    let left = outcome.zombies_left;
    match strategy {
        Strategy::None if left != n => Some(format!("expected {n} zombies, saw {left}")),
        Strategy::WaitPerSignal => {
            let signals = outcome.signals.unwrap_or(0);
            (signals >= n || left != n - signals).then(|| {
                format!("expected merged signals and {} zombies, saw {signals} signals and {left} zombies", n.saturating_sub(signals))
            })
        }
        Strategy::DoubleFork if left != 0 || outcome.adopted != n => Some(format!(
            "expected 0 zombies and {n} orphans adopted by the top, saw {left} and {}",
            outcome.adopted
        )),
        Strategy::WaitpidLoop | Strategy::IgnoreSigchld | Strategy::NoCldWait if left != 0 => {
            Some(format!("expected 0 zombies, saw {left}"))
        }
        _ => None,
    }
}

/// Runs one strategy in its own sub-process and collects what it reports on a pipe.
fn run_isolated(strategy: Strategy, n: usize) -> anyhow::Result<Outcome> {
    let (mut report_read, report_write) = pipe()?;
    let sub = process::fork_child(|| match burst(strategy, n) {
        Ok((signals, zombies)) => {
            let signals = signals.map_or(-1, |s| s as i64);
            i32::from(writeln!(&report_write, "{signals} {zombies}").is_err())
        }
        Err(e) => {
            eprintln!("reaper: {}: {e:#}", name(strategy));
            1
        }
    })?;
    drop(report_write);
    let mut report = String::new();
    report_read.read_to_string(&mut report)?;
    waitpid(sub, None)?;
    let numbers: Vec<i64> = report
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let [signals, zombies] = numbers[..] else {
        bail!("the {} sub-process sent no result", name(strategy));
    };
    Ok(Outcome {
        signals: usize::try_from(signals).ok(),
        zombies_left: zombies as usize,
        adopted: if strategy == Strategy::DoubleFork {
            reap_adopted(n)
        } else {
            0
        },
    })
}

/// In the sub-process: fork `n` children, release them together, apply the strategy, and
/// return (SIGCHLD deliveries counted, zombies left).
fn burst(strategy: Strategy, n: usize) -> anyhow::Result<(Option<usize>, usize)> {
    let me = getpid();
    let disposition = match strategy {
        Strategy::None | Strategy::DoubleFork => Sigchld::Default,
        Strategy::WaitPerSignal | Strategy::WaitpidLoop => Sigchld::Count { restart: true },
        Strategy::IgnoreSigchld => Sigchld::Ignore,
        Strategy::NoCldWait => Sigchld::CountNoCldWait,
    };
    process::set_sigchld(disposition)?;
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    sigchld.thread_block()?; // held pending through the burst, as during a busy handler

    // Children block reading `gate` until every write end is closed, then exit together.
    let (gate_read, gate_write) = pipe()?;
    let worker = || {
        process::close_inherited(&gate_write);
        let _ = (&gate_read).read(&mut [0u8; 1]); // end of file: the burst
        0
    };
    for _ in 0..n {
        if strategy == Strategy::DoubleFork {
            // The middle forks the worker and exits at once; we reap the middle right away.
            let middle = process::fork_child(|| i32::from(process::fork_child(worker).is_err()))?;
            waitpid(middle, None)?;
        } else {
            process::fork_child(worker)?;
        }
    }
    drop(gate_write);
    drop(gate_read);

    // Let the burst finish: every child of ours has exited (state Z, or reaped by the kernel).
    let exited = process::eventually(Duration::from_secs(10), || {
        process::children_of(me.as_raw())
            .iter()
            .all(|c| c.state == 'Z')
    });
    if !exited {
        bail!("the children did not exit within 10 s");
    }
    sigchld.thread_unblock()?; // the one pending SIGCHLD is delivered here
    let signals = process::take_sigchld();

    match strategy {
        Strategy::WaitPerSignal => {
            for _ in 0..signals {
                wait()?; // one child per signal, the classic mistake
            }
        }
        Strategy::WaitpidLoop if signals > 0 => {
            reap_all_waiting();
        }
        _ => {}
    }
    let zombies = process::zombies_of(me.as_raw());
    while wait().is_ok() {} // clean up before leaving; the table is already counted
    let signals =
        matches!(disposition, Sigchld::Count { .. } | Sigchld::CountNoCldWait).then_some(signals);
    Ok((signals, zombies))
}

/// `waitpid(-1, WNOHANG)` until nothing more has exited: one call per exited child, however
/// many signals announced them.
fn reap_all_waiting() -> usize {
    let mut reaped = 0;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return reaped,
            Ok(_) => reaped += 1,
            Err(Errno::EINTR) => continue,
            Err(_) => return reaped,
        }
    }
}

/// In the top process: reaps orphans that came to us as the subreaper (double-fork workers),
/// waiting briefly for them to finish exiting. Returns how many.
fn reap_adopted(expected: usize) -> usize {
    let mut reaped = 0;
    process::eventually(Duration::from_secs(5), || {
        reaped += reap_all_waiting();
        reaped >= expected
    });
    reaped
}

fn name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::None => "none",
        Strategy::WaitPerSignal => "wait per SIGCHLD",
        Strategy::WaitpidLoop => "waitpid loop",
        Strategy::IgnoreSigchld => "SIGCHLD ignored",
        Strategy::NoCldWait => "SA_NOCLDWAIT",
        Strategy::DoubleFork => "double fork",
    }
}

/// `pipe2(O_CLOEXEC)`, both ends as files.
fn pipe() -> std::io::Result<(File, File)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((File::from(read), File::from(write)))
}
