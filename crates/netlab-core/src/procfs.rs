//! Probes of another process read from /proc: what a server costs while it runs.
//! See proc_pid_stat(5) and proc_pid_status(5).

use std::io;

/// Fields of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R` running, `S` sleeping, `D` disk sleep, `Z` zombie, `T` stopped, ...
    pub state: char,
    pub ppid: i32,
    /// CPU time in user mode, in clock ticks ([`clock_ticks_per_second`]).
    pub utime_ticks: u64,
    /// CPU time in kernel mode, in clock ticks.
    pub stime_ticks: u64,
    pub threads: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

/// Fields of `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStatus {
    /// Times the process gave up the CPU because it waited (for I/O, a lock, ...).
    pub voluntary_ctxt_switches: u64,
    /// Times the scheduler took the CPU away from it.
    pub nonvoluntary_ctxt_switches: u64,
    /// Resident set size now, KiB.
    pub vm_rss_kib: u64,
    /// Peak resident set size ("high water mark"), KiB.
    pub vm_hwm_kib: u64,
    /// Virtual size: every mapping reserved, touched or not (thread stacks in full), KiB.
    pub vm_size_kib: u64,
    pub threads: u64,
}

/// Reads `/proc/PID/stat` (all threads together). Fails with NotFound once the process is gone
/// (a zombie is still there, with state `Z`).
pub fn stat(pid: i32) -> io::Result<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse /proc/{pid}/stat"),
        )
    })
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may itself contain spaces or ')':
    // the fields after it start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 of proc_pid_stat(5).
    let field = |n: usize| fields.get(n - 3).copied();
    Some(ProcStat {
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        utime_ticks: field(14)?.parse().ok()?,
        stime_ticks: field(15)?.parse().ok()?,
        threads: field(20)?.parse().ok()?,
        rss_pages: field(24)?.parse().ok()?,
    })
}

/// Reads `/proc/PID/status`.
pub fn status(pid: i32) -> io::Result<ProcStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(parse_status(&text))
}

fn parse_status(text: &str) -> ProcStatus {
    let mut status = ProcStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let number = || {
            value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        match key {
            "voluntary_ctxt_switches" => status.voluntary_ctxt_switches = number(),
            "nonvoluntary_ctxt_switches" => status.nonvoluntary_ctxt_switches = number(),
            "VmRSS" => status.vm_rss_kib = number(),
            "VmHWM" => status.vm_hwm_kib = number(),
            "VmSize" => status.vm_size_kib = number(),
            "Threads" => status.threads = number(),
            _ => {}
        }
    }
    status
}

/// How many descriptors the process has open (entries of `/proc/PID/fd`).
pub fn open_fds(pid: i32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// `sysconf(_SC_CLK_TCK)`: the unit of [`ProcStat::utime_ticks`] (100 on Linux).
pub fn clock_ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        _ => 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_has_spaces_and_parens() {
        let line = "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0 100 1000000 250 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!((stat.utime_ticks, stat.stime_ticks), (7, 3));
        assert_eq!(stat.threads, 5);
        assert_eq!(stat.rss_pages, 250);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id() as i32;
        let stat = stat(pid).unwrap();
        assert_eq!(stat.ppid, nix::unistd::getppid().as_raw());
        let status = status(pid).unwrap();
        assert!(status.vm_rss_kib > 0 && status.vm_hwm_kib >= status.vm_rss_kib);
        assert!(status.threads >= 1);
        let before = open_fds(pid).unwrap();
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(open_fds(pid).unwrap(), before + 1);
        drop(file);
    }
}
