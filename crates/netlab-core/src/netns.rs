//! A private network namespace for the TCP demos, the kernel's view of their sockets, and its
//! counters: what lab 10 reads to show a connection's life.
//!
//! - [`PrivateNet::enter`]: `unshare(CLONE_NEWNET)` (plus `CLONE_NEWUSER` when not root), then
//!   `ip link set lo up`. The namespace has its own loopback, its own sockets, its own counters
//!   and its own copy of the per-namespace sysctls under /proc/sys/net; it vanishes with the
//!   process, even when the process fails, so nothing is left behind and the host's settings
//!   are never touched. A [`PrivateNet`] is the only way to write a sysctl here.
//! - [`tcp_sockets`]: /proc/net/tcp and /proc/net/tcp6 parsed (state, queues, timer), the same
//!   table `ss` reads over netlink.
//! - [`counters`]: /proc/net/snmp and /proc/net/netstat as `Tcp.ActiveOpens`,
//!   `TcpExt.ListenOverflows`, ..., the numbers `nstat` prints.
//!
//! /proc/net is a link to /proc/self/net: it shows the namespace of the process that reads it.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use nix::sched::{unshare, CloneFlags};

/// The exit status of a demo that could not make its namespace: tests treat it as a skip
/// (77 is the automake convention for "skipped").
pub const EXIT_SKIPPED: i32 = 77;

/// Proof that this process runs in a network namespace of its own.
#[derive(Debug)]
pub struct PrivateNet {
    pid: u32,
    user_namespace: bool,
}

impl PrivateNet {
    /// Moves this process into a new network namespace and brings its loopback up.
    ///
    /// Syscalls, in order: `unshare(CLONE_NEWNET)` as root; otherwise
    /// `unshare(CLONE_NEWUSER|CLONE_NEWNET)` and writes to /proc/self/{setgroups,uid_map,gid_map}
    /// (what `unshare -rn` does), which makes this process root of the new user namespace and so
    /// allowed to manage its network. Then runs `ip link set lo up`: a new namespace's `lo` is
    /// down, and a child process inherits the namespace.
    ///
    /// A namespace belongs to a thread: this refuses to run with more than one thread, since the
    /// others would stay behind in the host's namespace.
    pub fn enter() -> io::Result<PrivateNet> {
        let threads = crate::procfs::status(std::process::id() as i32)?.threads;
        if threads != 1 {
            return Err(io::Error::other(format!(
                "refusing to unshare with {threads} threads: the others would stay in the host's namespace"
            )));
        }
        let user_namespace = !nix::unistd::geteuid().is_root();
        if user_namespace {
            let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
            unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(|e| {
                io::Error::other(format!("unshare(CLONE_NEWUSER|CLONE_NEWNET): {e}"))
            })?;
            std::fs::write("/proc/self/setgroups", "deny")?;
            std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
            std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))?;
        } else {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| io::Error::other(format!("unshare(CLONE_NEWNET): {e}")))?;
        }
        let net = PrivateNet {
            pid: std::process::id(),
            user_namespace,
        };
        net.set_link("lo", true)?;
        Ok(net)
    }

    /// [`enter`](Self::enter), or one line on stderr and exit status [`EXIT_SKIPPED`].
    pub fn enter_or_skip(program: &str) -> PrivateNet {
        match PrivateNet::enter() {
            Ok(net) => net,
            Err(e) => {
                eprintln!("{program}: skipped: cannot make a private network namespace ({e}); run as root or allow user namespaces");
                std::process::exit(EXIT_SKIPPED);
            }
        }
    }

    /// The prefix that runs a command in this namespace from another terminal:
    /// `nsenter -t PID -n` (with `-U` too when the namespace has its own users).
    pub fn nsenter(&self) -> String {
        let user = if self.user_namespace { " -U" } else { "" };
        format!("nsenter -t {}{user} -n", self.pid)
    }

    /// `ip link set NAME up|down` in this namespace. Taking `lo` down makes every peer on it
    /// vanish for an established connection: packets to it are dropped, no RST comes back.
    pub fn set_link(&self, name: &str, up: bool) -> io::Result<()> {
        let state = if up { "up" } else { "down" };
        let out = Command::new("ip")
            .args(["link", "set", name, state])
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run ip (iproute2): {e}")))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ip link set {name} {state}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Writes a per-namespace sysctl (`net.ipv4.tcp_syn_retries`) of this namespace only.
    /// Only keys under `net.` are accepted; `net.core.*` and `net.ipv4.*` TCP keys are per
    /// namespace on Linux, so the host keeps its own value.
    pub fn set_sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        if !key.starts_with("net.") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{key}: only net.* sysctls belong to a network namespace"),
            ));
        }
        std::fs::write(sysctl_path(key), value)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot set {key}={value}: {e}")))
    }
}

/// Reads a sysctl (`net.core.somaxconn`) from /proc/sys, as the calling process's namespace has it.
pub fn sysctl(key: &str) -> io::Result<String> {
    std::fs::read_to_string(sysctl_path(key))
        .map(|s| s.trim().to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {key}: {e}")))
}

/// [`sysctl`] as a number.
pub fn sysctl_u64(key: &str) -> io::Result<u64> {
    let text = sysctl(key)?;
    text.parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{key} = {text:?}")))
}

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// A TCP state, numbered as include/net/tcp_states.h (and /proc/net/tcp's `st` column) has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
}

impl TcpState {
    fn from_code(code: u8) -> Option<TcpState> {
        use TcpState::*;
        Some(match code {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            12 => NewSynRecv,
            _ => return None,
        })
    }

    /// The kernel's name (`FIN_WAIT1`, `CLOSE_WAIT`); `ss` prints the same with dashes.
    pub fn name(self) -> &'static str {
        use TcpState::*;
        match self {
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait1 => "FIN_WAIT1",
            FinWait2 => "FIN_WAIT2",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            Closing => "CLOSING",
            NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Which timer a socket has running (/proc/net/tcp's `tr` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpTimer {
    None,
    /// Retransmission (of data, a SYN or a SYN-ACK).
    Retransmit,
    /// Keepalive (also the FIN_WAIT2 timer of a socket still open).
    Keepalive,
    /// The TIME_WAIT timer (and FIN_WAIT2 of an orphan, held by a time-wait socket).
    TimeWait,
    /// Zero-window probe: the peer's receive window is closed.
    ZeroWindowProbe,
    Other(u8),
}

/// One row of /proc/net/tcp or /proc/net/tcp6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    /// Bytes sent and not yet acknowledged (0 for a listener).
    pub send_queue: u64,
    /// Bytes received and not yet read; for a listener, the connections in its accept queue.
    pub recv_queue: u64,
    pub timer: TcpTimer,
    /// Time until the timer fires.
    pub timer_left: Duration,
    /// Retransmissions so far of what the socket is waiting on (a SYN, a SYN-ACK, data).
    pub retransmits: u32,
    /// Keepalive or zero-window probes sent without an answer (the `timeout` column).
    pub probes: u32,
    /// Socket inode, as /proc/PID/fd shows it (`socket:[INODE]`); 0 for TIME_WAIT and SYN_RECV.
    pub inode: u64,
}

/// Every TCP socket of this namespace, IPv4 then IPv6: /proc/net/tcp and /proc/net/tcp6.
/// A socket that changes state between two reads may show twice or not at all. Each read walks
/// the kernel's whole connection hash table (shared by all namespaces), which costs a few
/// milliseconds of system time: sample every 10-20 ms, not in a tight loop.
pub fn tcp_sockets() -> io::Result<Vec<TcpSocket>> {
    let mut sockets = read_table(false)?;
    sockets.extend(read_table(true)?);
    Ok(sockets)
}

fn read_table(v6: bool) -> io::Result<Vec<TcpSocket>> {
    let ticks = crate::procfs::clock_ticks_per_second();
    let path = if v6 {
        "/proc/net/tcp6"
    } else {
        "/proc/net/tcp"
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if v6 && e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()), // no IPv6
        Err(e) => return Err(io::Error::new(e.kind(), format!("{path}: {e}"))),
    };
    text.lines()
        .skip(1)
        .map(|line| {
            parse_row(line, v6, ticks).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {line:?}"))
            })
        })
        .collect()
}

/// The sockets whose local or remote port is `port`: both ends of a connection to a listener.
pub fn sockets_on_port(port: u16) -> io::Result<Vec<TcpSocket>> {
    Ok(tcp_sockets()?
        .into_iter()
        .filter(|s| s.local.port() == port || s.remote.port() == port)
        .collect())
}

/// The state of the socket bound locally to `local` and connected to `remote`, if any.
pub fn state_of(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<TcpSocket>> {
    Ok(read_table(local.is_ipv6())?
        .into_iter()
        .find(|s| s.local == local && s.remote == remote))
}

// "  0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 ..."
fn parse_row(line: &str, v6: bool, ticks: u64) -> Option<TcpSocket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (tx, rx) = fields.get(4)?.split_once(':')?;
    let (tr, when) = fields.get(5)?.split_once(':')?;
    let timer = match u8::from_str_radix(tr, 16).ok()? {
        0 => TcpTimer::None,
        1 => TcpTimer::Retransmit,
        2 => TcpTimer::Keepalive,
        3 => TcpTimer::TimeWait,
        4 => TcpTimer::ZeroWindowProbe,
        n => TcpTimer::Other(n),
    };
    let when_ticks = u64::from_str_radix(when, 16).ok()?;
    Some(TcpSocket {
        local: parse_address(fields.get(1)?, v6)?,
        remote: parse_address(fields.get(2)?, v6)?,
        state: TcpState::from_code(u8::from_str_radix(fields.get(3)?, 16).ok()?)?,
        send_queue: u64::from_str_radix(tx, 16).ok()?,
        recv_queue: u64::from_str_radix(rx, 16).ok()?,
        timer,
        timer_left: Duration::from_millis(when_ticks * 1000 / ticks.max(1)),
        retransmits: u32::from_str_radix(fields.get(6)?, 16).ok()?,
        probes: fields.get(8)?.parse().ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// "0100007F:1F90": the address is printed word by word in the machine's byte order, so each
/// 32-bit word's native bytes are the address bytes; the port is plain hex.
fn parse_address(text: &str, v6: bool) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in 0..ip.len() / 8 {
        let w = u32::from_str_radix(ip.get(word * 8..word * 8 + 8)?, 16).ok()?;
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?))
    } else {
        IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))
    };
    Some(SocketAddr::new(ip, port))
}

/// The kernel's network counters of this namespace, keyed `Tcp.ActiveOpens`,
/// `TcpExt.ListenOverflows`, `Ip.InReceives`, ...: /proc/net/snmp and /proc/net/netstat, which
/// hold pairs of lines (`Tcp: Name1 Name2 ...` then `Tcp: 1 2 ...`). `nstat -az` prints the same
/// names with the group glued on (`TcpActiveOpens`, `TcpExtListenOverflows`).
pub fn counters() -> io::Result<HashMap<String, i64>> {
    let mut all = HashMap::new();
    for path in ["/proc/net/snmp", "/proc/net/netstat"] {
        let text = std::fs::read_to_string(path)?;
        all.extend(parse_counters(&text));
    }
    Ok(all)
}

fn parse_counters(text: &str) -> HashMap<String, i64> {
    let mut all = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((group, names)), Some((_, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(value) = value.parse() {
                all.insert(format!("{group}.{name}"), value);
            }
        }
    }
    all
}

/// Runs `ss ARGS` in this process's namespace and returns what it printed, or why it could not.
pub fn ss(args: &[&str]) -> String {
    match Command::new("ss").args(args).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => format!(
            "(ss failed: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("(cannot run ss from iproute2: {e})"),
    }
}

/// Whether a program is on the PATH (tcpdump, strace): the demos use them where installed.
pub fn have_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_of_both_tables() {
        let v4 = "   1: 0100007F:1F90 0100007F:C350 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000";
        let row = parse_row(v4, false, 100).unwrap();
        assert_eq!(row.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(row.remote, "127.0.0.1:50000".parse().unwrap());
        assert_eq!(row.state, TcpState::TimeWait);
        assert_eq!(row.timer, TcpTimer::TimeWait);
        assert_eq!(row.timer_left, Duration::from_secs(60));
        let v6 = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
        let row = parse_row(v6, true, 100).unwrap();
        assert_eq!(row.local, "[::1]:8080".parse().unwrap());
        assert_eq!(
            (row.state, row.recv_queue, row.inode),
            (TcpState::Listen, 3, 4242)
        );
    }

    #[test]
    fn parses_counter_pairs() {
        let text =
            "Tcp: RtoAlgorithm ActiveOpens MaxConn\nTcp: 1 42 -1\nUdp: InDatagrams\nUdp: 7\n";
        let all = parse_counters(text);
        assert_eq!(all["Tcp.ActiveOpens"], 42);
        assert_eq!(all["Tcp.MaxConn"], -1);
        assert_eq!(all["Udp.InDatagrams"], 7);
    }

    #[test]
    fn reads_this_machine() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rows = sockets_on_port(port).unwrap();
        assert!(rows.iter().any(|s| s.state == TcpState::Listen), "{rows:?}");
        assert!(counters().unwrap().contains_key("Tcp.ActiveOpens"));
        assert!(sysctl_u64("net.core.somaxconn").unwrap() > 0);
    }
}
