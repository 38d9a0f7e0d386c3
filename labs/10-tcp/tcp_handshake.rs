//! # Lab 10: the three-way handshake, and a SYN nobody answers
//!
//! ```text
//! cargo run --bin tcp-handshake                      # tcp_syn_retries 2: gives up after 7 s, twice
//! cargo run --bin tcp-handshake -- --syn-retries 3   # 15 s, twice
//! ```
//!
//! Part 1: a client connects. `connect` sends a SYN, the listener's kernel answers SYN-ACK, the
//! client's kernel sends the ACK and `connect` returns; `accept` only takes the finished
//! connection off the queue. The kernel counts each side: `Tcp.ActiveOpens` (connects that sent a
//! SYN) and `Tcp.PassiveOpens` (handshakes a listener completed), in /proc/net/snmp. Where tcpdump
//! is installed the demo captures the three packets.
//!
//! Part 2: a SYN that goes unanswered. Linux drops a SYN when the listener's accept queue is
//! full, without a reply, so filling a listener (backlog 1: two finished connections, nobody
//! accepts) makes the next client sit in SYN_SENT. The textbook back-off: the kernel
//! retransmits the SYN after 1 s, then doubles the wait (1 s, 2 s, 4 s: retransmissions at 1 s
//! and 3 s), and `connect` fails with ETIMEDOUT once `net.ipv4.tcp_syn_retries` doublings have
//! passed (2^(N+1) - 1 s: 127 s for the default 6; the demo sets 2 in its own namespace).
//! Since Linux 6.7 the first `net.ipv4.tcp_syn_linear_timeouts` (default 4) retransmissions
//! come 1 s apart instead, and only then does the wait double; the time to give up is the same.
//! The demo times both: the kernel's default, then with the linear part set to 0.
//! (Taking `lo` down instead would not do: `connect` then fails at once with ENETUNREACH, no
//! SYN is sent.)
//!
//! Everything runs in a private network namespace: the counters are this demo's alone, and
//! the sysctl it sets is the namespace's copy, never the host's.

use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use netlab_core::netns::{self, PrivateNet, TcpState};
use netlab_core::parse_args;
use nix::poll::{poll, PollFd, PollFlags};
use socket2::{Domain, Socket, Type};

/// Watches a handshake in the kernel's counters, then times a SYN's retransmissions.
#[derive(Parser)]
#[command(name = "tcp-handshake", version)]
struct Cli {
    /// net.ipv4.tcp_syn_retries for the unanswered SYN, set in the demo's own namespace only:
    /// it gives up after 2^(N+1) - 1 seconds.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=4))]
    syn_retries: u8,
}

fn main() {
    let cli: Cli = parse_args();
    let host_syn_retries =
        netns::sysctl("net.ipv4.tcp_syn_retries").unwrap_or_else(|e| e.to_string());
    let net = PrivateNet::enter_or_skip("tcp-handshake");
    netlab_core::exit_on_error("tcp-handshake", run(cli, &net, &host_syn_retries));
}

fn run(cli: Cli, net: &PrivateNet, host_syn_retries: &str) -> anyhow::Result<()> {
    println!(
        "tcp-handshake: pid {}, in a private network namespace (lo up)",
        std::process::id()
    );
    // backlog 1: the accept queue holds two finished connections (it counts as full only
    // when it holds more than the backlog), which part 2 uses.
    let listener = listen(1)?;
    let addr = listener.local_addr()?;
    handshake(net, &listener, addr)?;
    unanswered_syn(&cli, net, addr, host_syn_retries)
}

fn listen(backlog: i32) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

fn handshake(net: &PrivateNet, listener: &TcpListener, addr: SocketAddr) -> anyhow::Result<()> {
    println!();
    println!("1. a client connects to {addr}");
    let mut capture = Capture::start(addr.port())?;
    let before = netns::counters()?;
    let client = TcpStream::connect(addr).context("connect")?;
    let (server, _) = listener.accept().context("accept")?;
    let after = netns::counters()?;
    let delta = |key: &str| after.get(key).unwrap_or(&0) - before.get(key).unwrap_or(&0);
    let (active, passive) = (delta("Tcp.ActiveOpens"), delta("Tcp.PassiveOpens"));
    println!("   /proc/net/snmp: Tcp ActiveOpens +{active} (the connect), PassiveOpens +{passive} (the listener)");

    let client_end = client.local_addr()?;
    let client_state = netns::state_of(client_end, addr)?.map(|s| s.state);
    let server_state = netns::state_of(addr, client_end)?.map(|s| s.state);
    let name = |s: Option<TcpState>| s.map_or("(none)", TcpState::name);
    println!(
        "   /proc/net/tcp:  client {client_end} {}, server end {}",
        name(client_state),
        name(server_state)
    );
    print_indented(&netns::ss(&["-tn", "state", "established"]));
    println!("   in another terminal: {} ss -tanoe", net.nsenter());
    println!(
        "                        {} nstat -az TcpActiveOpens TcpPassiveOpens",
        net.nsenter()
    );
    println!(
        "                        {} tcpdump -i lo -n tcp port {}",
        net.nsenter(),
        addr.port()
    );

    let packets = capture.as_mut().map(Capture::finish).transpose()?;
    match &packets {
        Some(lines) => {
            println!(
                "   tcpdump -i lo -n tcp port {} (inside the namespace):",
                addr.port()
            );
            for line in lines {
                println!("     {line}");
            }
        }
        None => println!(
            "   (tcpdump is not installed: scripts/setup.sh installs it, to see the three packets)"
        ),
    }
    drop((client, server));

    if (active, passive) != (1, 1) {
        bail!("expected ActiveOpens +1 and PassiveOpens +1, saw +{active} and +{passive}");
    }
    let established = Some(TcpState::Established);
    if client_state != established || server_state != established {
        bail!("after connect and accept both ends should be ESTABLISHED");
    }
    if let Some(lines) = packets {
        let flags: Vec<&str> = lines.iter().filter_map(|l| flags_of(l)).collect();
        if flags != ["S", "S.", "."] {
            bail!("tcpdump showed flags {flags:?}, expected [S], [S.], [.]");
        }
        println!("   the three packets: SYN [S], SYN-ACK [S.], ACK [.]");
    }
    Ok(())
}

fn unanswered_syn(
    cli: &Cli,
    net: &PrivateNet,
    addr: SocketAddr,
    host_syn_retries: &str,
) -> anyhow::Result<()> {
    let retries = cli.syn_retries as u32;
    net.set_sysctl("net.ipv4.tcp_syn_retries", &retries.to_string())?;
    println!();
    println!(
        "2. a SYN nobody answers: net.ipv4.tcp_syn_retries = {retries} in this namespace (the host's stays {host_syn_retries})"
    );
    // Two finished connections fill the backlog-1 queue; nobody accepts them.
    let _queued = [TcpStream::connect(addr)?, TcpStream::connect(addr)?];
    println!("   two clients fill the accept queue of the listener (backlog 1), nobody accepts:");
    print_indented(&netns::ss(&["-ltn"]));

    // Since Linux 6.7 the first tcp_syn_linear_timeouts retransmissions of a SYN come 1 s
    // apart; only then does the wait double. The time before giving up is still that of the
    // doubling schedule of tcp_syn_retries. Round 2 sets it to 0: the textbook back-off.
    let linear_key = "net.ipv4.tcp_syn_linear_timeouts";
    let default_linear = netns::sysctl_u64(linear_key).ok();
    let mut rounds = vec![default_linear.unwrap_or(0)];
    if default_linear.is_some_and(|l| l > 0) {
        rounds.push(0);
    }
    let mut summary = Vec::new();
    for (round, &linear) in rounds.iter().enumerate() {
        if default_linear.is_some() {
            net.set_sysctl(linear_key, &linear.to_string())?;
        }
        let (expected, give_up) = syn_schedule(retries, linear);
        println!();
        match default_linear {
            Some(_) => println!(
                "   {linear_key} = {linear}{}",
                if round == 0 {
                    " (the kernel's default)"
                } else {
                    " (set here: plain doubling)"
                }
            ),
            None => println!("   (this kernel has no {linear_key}: plain doubling)"),
        }
        let (measured, took) = time_one_syn(addr, round == 0)?;
        println!(
            "   SYN retransmissions at {} s (expected {} s); gave up at {took:.2} s (expected {give_up} s)",
            join(&measured),
            join(&expected),
        );
        // Wide tolerance: a timer fires late on a loaded machine, never early; 20 ms sampling.
        let near = |seen: f64, want: f64| seen >= want - 0.05 && seen <= want + 1.5;
        if measured.len() != expected.len()
            || !measured.iter().zip(&expected).all(|(&s, &w)| near(s, w))
        {
            bail!("the retransmissions did not come at the expected times");
        }
        if !near(took, give_up) {
            bail!("connect gave up after {took:.2} s, not about {give_up} s");
        }
        summary.push(format!("at {} s", join(&measured)));
    }
    println!("   in another terminal: {} ss -tanoe state syn-sent   (timer:(on,...,N) counts the retries)", net.nsenter());
    println!();
    println!(
        "observed: the handshake counted one active and one passive open; an unanswered SYN was retransmitted {} and connect failed with ETIMEDOUT after {} s",
        summary.join(", then with plain doubling "),
        syn_schedule(retries, 0).1
    );
    Ok(())
}

/// When the kernel retransmits an unanswered SYN, and when it gives up. The first RTO is 1 s;
/// after the first `linear` retransmissions it doubles each time. At each expiry the kernel gives
/// up instead once the time since the first SYN reaches what `retries` doublings take:
/// 1 + 2 + ... + 2^retries = 2^(retries+1) - 1 s.
fn syn_schedule(retries: u32, linear: u64) -> (Vec<f64>, f64) {
    let give_up = f64::from((1u32 << (retries + 1)) - 1);
    let (mut at, mut gap, mut sent) = (0.0, 1.0, 0u64);
    let mut retransmissions = Vec::new();
    loop {
        at += gap;
        if at >= give_up {
            return (retransmissions, at);
        }
        retransmissions.push(at);
        sent += 1;
        if sent > linear {
            gap *= 2.0;
        }
    }
}

/// Connects a fresh client to the full listener and samples its socket every 20 ms until the
/// connect fails (each sample reads /proc/net/tcp, which costs system time: not more often);
/// returns the times of its SYN retransmissions and when it failed (ETIMEDOUT).
fn time_one_syn(addr: SocketAddr, show_ss: bool) -> anyhow::Result<(Vec<f64>, f64)> {
    let before = netns::counters()?;
    let client = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    client.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    let local = client.local_addr()?.as_socket().context("client address")?;
    client.set_nonblocking(true)?;
    let start = Instant::now();
    match client.connect(&addr.into()) {
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        other => bail!("a non-blocking connect should say EINPROGRESS, got {other:?}"),
    }
    println!(
        "   a client {local} connects (non-blocking: EINPROGRESS); its socket, sampled around each timer expiry:"
    );
    println!(
        "   {:>8}  {:<9} {:>8}  {:>10}",
        "time", "state", "retrans", "next in"
    );

    let mut retransmissions = Vec::new();
    let mut last = None;
    let error = loop {
        let row = netns::state_of(local, addr)?;
        let now = start.elapsed();
        if let Some(row) = &row {
            let shown = (row.state, row.retransmits);
            if last != Some(shown) {
                println!(
                    "   {:>7.3}s  {:<9} {:>8}  {:>9.2}s",
                    now.as_secs_f64(),
                    row.state,
                    row.retransmits,
                    row.timer_left.as_secs_f64()
                );
                if row.retransmits as usize > retransmissions.len() {
                    retransmissions.push(now.as_secs_f64());
                    if show_ss && retransmissions.len() == 1 {
                        print_indented(&netns::ss(&["-tnoe", "state", "syn-sent"]));
                    }
                }
                last = Some(shown);
            }
        }
        // Sleep until shortly before the socket's timer fires, then sample every 20 ms.
        let wait = row.map_or(20, |r| {
            r.timer_left.as_millis().saturating_sub(60).clamp(20, 500)
        });
        let mut fds = [PollFd::new(client.as_fd(), PollFlags::POLLOUT)];
        if poll(&mut fds, wait as u16)? > 0 {
            break client.take_error()?;
        }
        if now > Duration::from_secs(60) {
            bail!("connect had not finished after 60 s");
        }
    };
    let took = start.elapsed().as_secs_f64();
    let after = netns::counters()?;
    let delta = |key: &str| after.get(key).unwrap_or(&0) - before.get(key).unwrap_or(&0);
    println!(
        "   connect finished after {took:.2} s with {}",
        error.as_ref().map_or("success".to_string(), errno_name)
    );
    println!(
        "   TcpExt: TCPSynRetrans +{}, ListenOverflows +{}, ListenDrops +{} (each SYN dropped by the full queue)",
        delta("TcpExt.TCPSynRetrans"),
        delta("TcpExt.ListenOverflows"),
        delta("TcpExt.ListenDrops")
    );
    if error.as_ref().and_then(io::Error::raw_os_error) != Some(libc::ETIMEDOUT) {
        bail!("connect should have failed with ETIMEDOUT");
    }
    if delta("TcpExt.TCPSynRetrans") != retransmissions.len() as i64 {
        bail!("TCPSynRetrans does not match the retransmissions the socket showed");
    }
    Ok((retransmissions, took))
}

/// tcpdump capturing the next three packets of a port, where tcpdump is installed.
struct Capture {
    child: Child,
    /// Kept open so tcpdump's closing summary does not meet a closed pipe.
    stderr: BufReader<ChildStderr>,
}

impl Capture {
    fn start(port: u16) -> anyhow::Result<Option<Capture>> {
        if !netns::have_program("tcpdump") {
            return Ok(None);
        }
        let mut child = Command::new("tcpdump")
            .args([
                "-i",
                "lo",
                "-n",
                "-l",
                "-c",
                "3",
                "tcp",
                "port",
                &port.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("tcpdump")?;
        // It says "listening on lo ..." on stderr once the capture is open.
        let mut stderr = BufReader::new(child.stderr.take().context("tcpdump stderr")?);
        let mut said = String::new();
        while !said.contains("listening on") {
            let mut line = String::new();
            if stderr.read_line(&mut line)? == 0 {
                let _ = child.wait();
                bail!("tcpdump did not start: {}", said.trim());
            }
            said.push_str(&line);
        }
        Ok(Some(Capture { child, stderr }))
    }

    /// Waits (at most 3 s) for the three packets and returns tcpdump's lines.
    fn finish(&mut self) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill(); // our own child, by pid
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.wait();
        let _ = io::copy(&mut self.stderr, &mut io::sink());
        let mut text = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut text)?;
        }
        Ok(text.lines().map(str::to_string).collect())
    }
}

/// "Flags [S.]," -> "S."
fn flags_of(line: &str) -> Option<&str> {
    let rest = &line[line.find("Flags [")? + 7..];
    Some(&rest[..rest.find(']')?])
}

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ETIMEDOUT) => "ETIMEDOUT".into(),
        Some(libc::ECONNREFUSED) => "ECONNREFUSED".into(),
        Some(libc::ENETUNREACH) => "ENETUNREACH".into(),
        _ => e.to_string(),
    }
}

fn join(values: &[f64]) -> String {
    let parts: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
    parts.join(", ")
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("     {line}");
    }
}
