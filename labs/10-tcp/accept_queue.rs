//! # Lab 10: a full accept queue, the listen backlog and somaxconn
//!
//! ```text
//! cargo run --bin accept-queue                        # backlog 2, 3 clients beyond it
//! cargo run --bin accept-queue -- --backlog 4 --extra 5
//! ```
//!
//! `listen(fd, backlog)` sizes the accept queue: connections whose handshake the kernel has
//! finished and that wait for `accept`. It counts as full when it holds *more* than the
//! backlog, so backlog + 1 fit (`ss -ltn`: Recv-Q is the queue, Send-Q the backlog).
//!
//! What happens beyond, when nobody accepts:
//! - a SYN that arrives while the queue is full is dropped without a reply (the client sits in
//!   SYN_SENT and retransmits; see `tcp-handshake`);
//! - a SYN that arrived while there was room was answered with a SYN-ACK, and the client's
//!   `connect` returned 0: for the client the connection is ESTABLISHED. If the queue is full
//!   when its ACK arrives, the server drops that ACK: it holds no connection for the client,
//!   only a request in SYN_RECV, and retransmits the SYN-ACK hoping for room next time.
//!   Both count in `TcpExt.ListenOverflows` and `ListenDrops`;
//! - with `net.ipv4.tcp_abort_on_overflow = 1` the server answers that ACK with a RST instead,
//!   and the client's next read fails with ECONNRESET.
//!
//! On loopback a handshake finishes inside `connect`, so to have several SYNs arrive before
//! their ACKs the extra clients turn `TCP_QUICKACK` off before connecting: a client in that
//! "delayed ACK" mode holds the handshake's ACK for up to 200 ms, hoping to send it with data.
//!
//! The backlog is capped at `net.core.somaxconn` when `listen` is called.
//! Everything runs in a private network namespace: its counters and sysctls are its own.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use netlab_core::netns::{self, PrivateNet, TcpState};
use netlab_core::{parse_args, process};
use socket2::{Domain, Socket, Type};

/// Fills a listener that never accepts and shows what the kernel does with the clients beyond it.
#[derive(Parser)]
#[command(name = "accept-queue", version)]
struct Cli {
    /// listen(2) backlog of the listener that never accepts.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    backlog: u32,

    /// Clients that connect together once backlog clients wait in the queue (one more fits).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=32))]
    extra: u32,
}

fn main() {
    let cli: Cli = parse_args();
    let host = ["net.core.somaxconn", "net.ipv4.tcp_abort_on_overflow"]
        .map(|key| netns::sysctl(key).unwrap_or_else(|e| e.to_string()));
    let net = PrivateNet::enter_or_skip("accept-queue");
    netlab_core::exit_on_error("accept-queue", run(cli, &net, &host));
}

fn run(cli: Cli, net: &PrivateNet, host: &[String; 2]) -> anyhow::Result<()> {
    println!(
        "accept-queue: pid {}, in a private network namespace (lo up)",
        std::process::id()
    );
    let (backlog, extra) = (cli.backlog, cli.extra as usize);
    let dropped = overflow(net, backlog, extra, false)?;
    let reset = overflow(net, backlog, extra, true)?;
    let capped = somaxconn_cap(net)?;
    println!();
    println!(
        "   (the host keeps net.core.somaxconn = {} and net.ipv4.tcp_abort_on_overflow = {})",
        host[0], host[1]
    );
    println!();
    println!(
        "observed: backlog {backlog} held {} connections; {dropped} clients whose connect returned 0 had no connection on the server (ACK dropped, SYN-ACK retransmitted); with tcp_abort_on_overflow = 1, {reset} got ECONNRESET; the backlog was capped at somaxconn {capped}",
        backlog + 1
    );
    Ok(())
}

/// Fills a backlog-`backlog` listener, then connects `extra` delayed-ACK clients together.
/// Returns how many clients the overflow hit (ACK dropped, or reset when `abort`).
fn overflow(net: &PrivateNet, backlog: u32, extra: usize, abort: bool) -> anyhow::Result<usize> {
    net.set_sysctl(
        "net.ipv4.tcp_abort_on_overflow",
        if abort { "1" } else { "0" },
    )?;
    let listener = listen(backlog as i32)?;
    let addr = listener.local_addr()?;
    println!();
    if abort {
        println!("2. the same with net.ipv4.tcp_abort_on_overflow = 1 (in this namespace)");
    } else {
        println!("1. a listener on {addr} with backlog {backlog} that never accepts");
        println!("   (net.ipv4.tcp_abort_on_overflow = 0, the default)");
    }

    let _waiting: Vec<TcpStream> = (0..backlog)
        .map(|_| TcpStream::connect(addr))
        .collect::<io::Result<_>>()?;
    println!(
        "   {backlog} clients connect and wait in the queue; {}",
        listener_line(addr)?
    );

    let before = netns::counters()?;
    let mut clients = Vec::new();
    for _ in 0..extra {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.set_tcp_quickack(false)?; // hold the handshake's ACK (up to 200 ms)
        socket.connect(&addr.into()).context("connect")?;
        clients.push(TcpStream::from(socket));
    }
    println!("   {extra} more clients with TCP_QUICKACK off connect: every connect returned 0");
    let ends: Vec<(SocketAddr, SocketAddr)> = clients
        .iter()
        .map(|c| Ok((c.local_addr()?, addr)))
        .collect::<io::Result<_>>()?;

    // Wait for the delayed ACKs: one takes the last slot, the others overflow.
    let overflowed = extra as i64 - 1;
    process::eventually(Duration::from_secs(3), || {
        delta(&before, "TcpExt.ListenOverflows") >= overflowed
    });
    std::thread::sleep(Duration::from_millis(50));
    // Counted now, before the slow part below: each read of /proc/net/tcp walks every socket of
    // the machine, and 1 s after their SYN the server retransmits the SYN-ACKs (counted next).
    let settled = netns::counters()?;
    let counted =
        |key: &str| settled.get(key).copied().unwrap_or(0) - before.get(key).copied().unwrap_or(0);
    let (overflows, drops, resets) = (
        counted("TcpExt.ListenOverflows"),
        counted("TcpExt.ListenDrops"),
        counted("Tcp.OutRsts"),
    );
    println!("   after their delayed ACKs: {}", listener_line(addr)?);

    let mut hit = 0;
    println!(
        "   {:>22}  {:<12} {:<12} client reads",
        "client", "client end", "server end"
    );
    for (client, &(local, server)) in clients.iter_mut().zip(&ends) {
        let theirs = netns::state_of(server, local)?;
        let read = try_read(client);
        let mine = netns::state_of(local, server)?.map(|s| s.state);
        println!(
            "   {local:>22}  {:<12} {:<12} {read}",
            mine.map_or("(gone)", TcpState::name),
            theirs.as_ref().map_or("(none)", |s| s.state.name()),
        );
        let no_connection = theirs.as_ref().is_none_or(|s| s.state == TcpState::SynRecv);
        let overflowed = match abort {
            true => read == "ECONNRESET",
            false => mine == Some(TcpState::Established) && no_connection,
        };
        hit += usize::from(overflowed);
    }
    println!(
        "   TcpExt: ListenOverflows +{overflows}, ListenDrops +{drops}; Tcp OutRsts +{resets}"
    );
    if hit as i64 != overflowed {
        bail!(
            "expected {overflowed} of {extra} clients {}, saw {hit}",
            if abort {
                "reset"
            } else {
                "without a server connection"
            }
        );
    }
    if overflows < overflowed || drops < overflowed {
        bail!("ListenOverflows and ListenDrops should have grown by at least {overflowed}");
    }
    if !abort {
        syn_ack_retransmitted(net, &ends, &settled)?;
        full_queue_drops_syn(addr)?;
    }
    Ok(hit)
}

/// The server keeps the overflowed clients as requests and retransmits their SYN-ACK (after
/// 1 s, then doubling, `net.ipv4.tcp_synack_retries` times).
fn syn_ack_retransmitted(
    net: &PrivateNet,
    ends: &[(SocketAddr, SocketAddr)],
    before: &HashMap<String, i64>,
) -> anyhow::Result<()> {
    let retransmitted = |ends: &[(SocketAddr, SocketAddr)]| {
        ends.iter().any(|&(local, server)| {
            netns::state_of(server, local)
                .ok()
                .flatten()
                .is_some_and(|s| s.retransmits > 0)
        })
    };
    let seen = process::eventually(Duration::from_secs(4), || retransmitted(ends));
    println!("   the server's half-open requests for them, a moment later:");
    print_indented(&netns::ss(&["-tno", "state", "syn-recv"]));
    println!(
        "   TcpExt: TCPSynRetrans +{} (SYN-ACKs sent again), ListenOverflows +{} (the clients' ACKs dropped again)",
        delta(before, "TcpExt.TCPSynRetrans"),
        delta(before, "TcpExt.ListenOverflows")
    );
    println!(
        "   in another terminal: {} ss -ltn; {} nstat -az TcpExtListenOverflows TcpExtListenDrops",
        net.nsenter(),
        net.nsenter()
    );
    if !seen {
        bail!("no SYN-ACK was retransmitted for the clients whose ACK was dropped");
    }
    Ok(())
}

/// A client that connects now, with the queue full, gets no answer at all: its SYN is dropped.
fn full_queue_drops_syn(addr: SocketAddr) -> anyhow::Result<()> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    let _ = socket.connect(&addr.into()); // EINPROGRESS
    std::thread::sleep(Duration::from_millis(100));
    let local = socket.local_addr()?.as_socket().context("address")?;
    let state = netns::state_of(local, addr)?.map(|s| s.state);
    println!(
        "   one more client now: {} after 100 ms (its SYN was dropped, no SYN-ACK)",
        state.map_or("(gone)", TcpState::name)
    );
    if state != Some(TcpState::SynSent) {
        bail!("a client connecting to the full queue should wait in SYN_SENT");
    }
    Ok(())
}

/// listen(2) is where the backlog meets net.core.somaxconn: the smaller wins.
fn somaxconn_cap(net: &PrivateNet) -> anyhow::Result<u64> {
    let somaxconn = netns::sysctl_u64("net.core.somaxconn")?;
    println!();
    println!(
        "3. the backlog is capped by net.core.somaxconn = {somaxconn} (this namespace's, read now)"
    );
    let asked = (somaxconn * 4).min(i32::MAX as u64);
    let listener = listen(asked as i32)?;
    let got = backlog_of(listener.local_addr()?)?;
    println!("   listen(fd, {asked}) -> ss Send-Q {got}");
    net.set_sysctl("net.core.somaxconn", "8")?;
    let small = listen(100)?;
    let got_small = backlog_of(small.local_addr()?)?;
    println!("   with net.core.somaxconn = 8 (set here): listen(fd, 100) -> ss Send-Q {got_small}");
    if got != somaxconn || got_small != 8 {
        bail!("the backlog was not capped at somaxconn");
    }
    Ok(somaxconn)
}

fn listen(backlog: i32) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// `ss -ltn` for one listener: "Recv-Q 3 Send-Q 2" (queue and backlog).
fn listener_line(addr: SocketAddr) -> anyhow::Result<String> {
    let (recv_q, send_q) = ss_queues(addr)?;
    Ok(format!(
        "ss -ltn: Recv-Q {recv_q} (queued), Send-Q {send_q} (backlog)"
    ))
}

fn backlog_of(addr: SocketAddr) -> anyhow::Result<u64> {
    Ok(ss_queues(addr)?.1)
}

/// Recv-Q and Send-Q of the listener on `addr`, from `ss -ltn` (Send-Q of a listener comes only
/// over netlink: /proc/net/tcp has no column for the backlog).
fn ss_queues(addr: SocketAddr) -> anyhow::Result<(u64, u64)> {
    let text = netns::ss(&["-ltn"]);
    let row = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() >= 4 && w[3] == addr.to_string())
        .with_context(|| format!("no listener {addr} in ss -ltn:\n{text}"))?;
    Ok((row[1].parse()?, row[2].parse()?))
}

/// A non-blocking read: "EAGAIN (no data, connection fine)", "ECONNRESET", ...
fn try_read(stream: &mut TcpStream) -> String {
    let _ = stream.set_nonblocking(true);
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(0) => "EOF".into(),
        Ok(n) => format!("{n} bytes"),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => "EAGAIN (nothing yet)".into(),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => "ECONNRESET".into(),
        Err(e) => e.to_string(),
    }
}

fn delta(before: &HashMap<String, i64>, key: &str) -> i64 {
    let now = netns::counters().map(|c| c.get(key).copied().unwrap_or(0));
    now.unwrap_or(0) - before.get(key).copied().unwrap_or(0)
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("     {line}");
    }
}
