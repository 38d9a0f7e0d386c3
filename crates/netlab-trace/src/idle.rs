//! "Is the server idle?", asked of the kernel: every thread of every process in the server's
//! tree is asleep (`S` in /proc/PID/task/TID/stat) inside a syscall that waits for the outside
//! world (/proc/PID/task/TID/syscall names it), and strace has caught up: for each of those
//! waits that is traced, strace has already printed its entry. A thread strace is handling is
//! in state `t`, so it does not count as asleep.

use std::collections::HashMap;

/// Why the server is not idle yet (shown when a step times out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    /// A thread is running, runnable or stopped by strace.
    Running { tid: i32, state: char },
    /// A thread sleeps in a syscall that is not a wait (e.g. a disk read).
    NotWaiting { tid: i32, syscall: String },
    /// A thread waits in a traced call strace has not printed yet.
    StraceBehind { tid: i32, syscall: String },
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Running { tid, state } => write!(f, "thread {tid} is in state {state}"),
            Busy::NotWaiting { tid, syscall } => {
                write!(f, "thread {tid} sleeps in {syscall}, not a wait")
            }
            Busy::StraceBehind { tid, syscall } => {
                write!(f, "thread {tid} waits in {syscall}, not yet in the trace")
            }
        }
    }
}

/// The syscalls a thread of an idle server may sleep in: waits for a socket, a child, a
/// signal, a lock or a timer.
fn wait_name(number: i64) -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    let arch: &[(i64, &str)] = &[
        (libc::SYS_select, "select"),
        (libc::SYS_poll, "poll"),
        (libc::SYS_epoll_wait, "epoll_wait"),
        (libc::SYS_accept, "accept"),
        (libc::SYS_pause, "pause"),
    ];
    #[cfg(not(target_arch = "x86_64"))]
    let arch: &[(i64, &str)] = &[];
    let common: &[(i64, &str)] = &[
        (libc::SYS_pselect6, "pselect6"),
        (libc::SYS_ppoll, "ppoll"),
        (libc::SYS_epoll_pwait, "epoll_pwait"),
        (libc::SYS_epoll_pwait2, "epoll_pwait2"),
        (libc::SYS_accept4, "accept4"),
        (libc::SYS_read, "read"),
        (libc::SYS_recvfrom, "recvfrom"),
        (libc::SYS_recvmsg, "recvmsg"),
        (libc::SYS_sendto, "sendto"),
        (libc::SYS_sendmsg, "sendmsg"),
        (libc::SYS_write, "write"),
        (libc::SYS_sendfile, "sendfile"),
        (libc::SYS_io_uring_enter, "io_uring_enter"),
        (libc::SYS_wait4, "wait4"),
        (libc::SYS_waitid, "waitid"),
        (libc::SYS_futex, "futex"),
        (libc::SYS_nanosleep, "nanosleep"),
        (libc::SYS_clock_nanosleep, "clock_nanosleep"),
        (libc::SYS_rt_sigsuspend, "rt_sigsuspend"),
        (libc::SYS_rt_sigtimedwait, "rt_sigtimedwait"),
    ];
    arch.iter()
        .chain(common)
        .find(|(n, _)| *n == number)
        .map(|(_, name)| *name)
}

/// A thread's state letter from /proc/.../stat (the field after the `(comm)`), or None when it
/// is gone.
fn state_of(pid: i32, tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.trim_start().chars().next()
}

/// The syscall number a sleeping thread is in (first field of /proc/.../syscall), or None if
/// it is running (`running`) or gone.
fn syscall_of(pid: i32, tid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Checks every thread of the processes in `pids` (those still alive). `pending` is what strace
/// has printed of each thread's current call; `traced` tells which calls strace prints.
pub fn check(
    pids: &[i32],
    pending: &HashMap<i32, String>,
    traced: &dyn Fn(&str) -> bool,
) -> Result<(), Busy> {
    for &pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue; // gone (or a thread id, whose process is listed too)
        };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let Some(state) = state_of(pid, tid) else {
                continue;
            };
            match state {
                'Z' | 'X' => continue,
                'S' => {}
                _ => return Err(Busy::Running { tid, state }),
            }
            let Some(number) = syscall_of(pid, tid) else {
                return Err(Busy::Running { tid, state: 'R' });
            };
            let Some(name) = wait_name(number) else {
                return Err(Busy::NotWaiting {
                    tid,
                    syscall: format!("syscall {number}"),
                });
            };
            if traced(name) && pending.get(&tid).map(String::as_str) != Some(name) {
                return Err(Busy::StraceBehind {
                    tid,
                    syscall: name.to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Command, Stdio};

    #[test]
    fn a_process_blocked_in_read_is_idle_and_a_busy_one_is_not() {
        // `cat` with a pipe on stdin sleeps in read(0, ...).
        let mut cat = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = cat.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let untraced = |_: &str| false;
        while check(&[pid], &HashMap::new(), &untraced).is_err() {
            assert!(std::time::Instant::now() < deadline, "cat never slept");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Traced read with nothing printed by strace: strace is behind.
        let traced = |name: &str| name == "read";
        assert!(matches!(
            check(&[pid], &HashMap::new(), &traced),
            Err(Busy::StraceBehind { .. })
        ));
        drop(cat.stdin.take());
        let mut out = String::new();
        cat.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        cat.wait().unwrap();
    }
}
