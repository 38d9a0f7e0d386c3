//! # Lab 10: a peer that vanishes, keepalive, and TCP_USER_TIMEOUT
//!
//! ```text
//! cargo run --bin keepalive                                  # idle 1 s, interval 1 s, 3 probes
//! cargo run --bin keepalive -- --idle 2 --interval 1 --count 5
//! ```
//!
//! A TCP connection with nothing to send sends nothing. If the peer's machine dies, or a
//! cable is cut, no packet says so: an idle connection stays ESTABLISHED for ever, and a
//! `read` waits for ever. Two ways to find out:
//!
//! - `SO_KEEPALIVE`: after `TCP_KEEPIDLE` seconds of silence the kernel sends a probe, then one
//!   every `TCP_KEEPINTVL` seconds; after `TCP_KEEPCNT` unanswered probes it gives up and the
//!   socket fails with ETIMEDOUT: idle + count x interval. It is off unless a program turns it
//!   on, and the defaults (`net.ipv4.tcp_keepalive_time` 7200 s, `_intvl` 75 s, `_probes` 9)
//!   take over two hours.
//! - `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged before the connection is
//!   dropped with ETIMEDOUT. Without it, the kernel retransmits `net.ipv4.tcp_retries2` (15)
//!   times, about 15 minutes.
//!
//! The demo makes the peer vanish for real, inside its own network namespace:
//! `ip link set lo down` drops every packet on the loopback device, and no RST comes back.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use netlab_core::netns::{self, PrivateNet, TcpState, TcpTimer};
use netlab_core::parse_args;
use nix::poll::{poll, PollFd, PollFlags};
use socket2::{SockRef, TcpKeepalive};

/// Makes an idle connection's peer vanish and times how keepalive and TCP_USER_TIMEOUT notice.
#[derive(Parser)]
#[command(name = "keepalive", version)]
struct Cli {
    /// TCP_KEEPIDLE: seconds of silence before the first probe.
    #[arg(long, value_name = "SECS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=30))]
    idle: u32,

    /// TCP_KEEPINTVL: seconds between probes.
    #[arg(long, value_name = "SECS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=30))]
    interval: u32,

    /// TCP_KEEPCNT: unanswered probes before the connection is dropped.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    count: u32,

    /// TCP_USER_TIMEOUT, in seconds, for the connection that sends data into the void.
    #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=30))]
    user_timeout: u32,
}

/// The host's keepalive and retransmission defaults, read before leaving its namespace.
struct Defaults {
    time: u64,
    interval: u64,
    probes: u64,
    retries2: u64,
}

fn main() {
    let cli: Cli = parse_args();
    let defaults = read_defaults();
    let net = PrivateNet::enter_or_skip("keepalive");
    netlab_core::exit_on_error("keepalive", defaults.and_then(|d| run(cli, &net, &d)));
}

fn read_defaults() -> anyhow::Result<Defaults> {
    Ok(Defaults {
        time: netns::sysctl_u64("net.ipv4.tcp_keepalive_time")?,
        interval: netns::sysctl_u64("net.ipv4.tcp_keepalive_intvl")?,
        probes: netns::sysctl_u64("net.ipv4.tcp_keepalive_probes")?,
        retries2: netns::sysctl_u64("net.ipv4.tcp_retries2")?,
    })
}

fn run(cli: Cli, net: &PrivateNet, defaults: &Defaults) -> anyhow::Result<()> {
    println!(
        "keepalive: pid {}, in a private network namespace (lo up)",
        std::process::id()
    );
    let total = defaults.time + defaults.probes * defaults.interval;
    println!(
        "this host's defaults: tcp_keepalive_time {} s, tcp_keepalive_intvl {} s, tcp_keepalive_probes {}",
        defaults.time, defaults.interval, defaults.probes
    );
    println!(
        "  -> with SO_KEEPALIVE and nothing else set, a vanished peer is noticed after {} + {} x {} = {total} s ({}); without SO_KEEPALIVE, never",
        defaults.time, defaults.probes, defaults.interval, hms(total)
    );
    println!(
        "  -> unacknowledged data is retransmitted tcp_retries2 = {} times before the connection is dropped",
        defaults.retries2
    );

    let listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let addr = listener.local_addr()?;
    let (mut plain, _plain_peer) = connect(&listener)?;
    let (mut probing, _probing_peer) = connect(&listener)?;
    let (mut sending, _sending_peer) = connect(&listener)?;
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(cli.idle.into()))
        .with_interval(Duration::from_secs(cli.interval.into()))
        .with_retries(cli.count);
    SockRef::from(&probing).set_tcp_keepalive(&keepalive)?; // SO_KEEPALIVE + the three TCP_KEEP*
    SockRef::from(&sending)
        .set_tcp_user_timeout(Some(Duration::from_secs(cli.user_timeout.into())))?;
    let ends = [
        ("no keepalive", plain.local_addr()?),
        ("keepalive", probing.local_addr()?),
        ("user timeout", sending.local_addr()?),
    ];
    println!();
    println!("three idle connections to {addr}:");
    println!("  {} ({}): nothing set", ends[0].1, ends[0].0);
    println!(
        "  {} ({}): SO_KEEPALIVE, TCP_KEEPIDLE {}, TCP_KEEPINTVL {}, TCP_KEEPCNT {}",
        ends[1].1, ends[1].0, cli.idle, cli.interval, cli.count
    );
    println!(
        "  {} ({}): TCP_USER_TIMEOUT {} s",
        ends[2].1, ends[2].0, cli.user_timeout
    );

    net.set_link("lo", false)?;
    let start = Instant::now();
    println!();
    println!("ip link set lo down: the peer is gone, nothing will answer (and no RST will come)");
    sending.write_all(&[b'x'; 1000])?; // accepted into the send buffer; it will never be acknowledged
    println!("the user-timeout connection writes 1000 bytes: write returned at once (buffered)");
    println!(
        "in another terminal: {} ss -tno   (timer:(keepalive,...) and the probe count)",
        net.nsenter()
    );
    println!();
    println!(
        "{:>7}  {:<32} {:<32} {:<32}",
        "time", ends[0].0, ends[1].0, ends[2].0
    );

    let keepalive_expected = f64::from(cli.idle + cli.count * cli.interval);
    let user_expected = f64::from(cli.user_timeout);
    let watch_until = keepalive_expected.max(user_expected) + 2.0;
    let mut failed: [Option<(f64, String)>; 3] = [None, None, None];
    let mut next_row = 0.0;
    while start.elapsed().as_secs_f64() < watch_until + 5.0 {
        let now = start.elapsed().as_secs_f64();
        if now >= next_row {
            print_row(now, &ends, addr)?;
            next_row += 0.5;
        }
        let streams = [&mut plain, &mut probing, &mut sending];
        for (i, stream) in streams.into_iter().enumerate() {
            if failed[i].is_none() && readable(stream)? {
                failed[i] = Some((now, read_error(stream)));
                println!(
                    "{now:>6.2}s  {}: read -> {}",
                    ends[i].0,
                    failed[i].as_ref().unwrap().1
                );
            }
        }
        if failed[1].is_some() && failed[2].is_some() && now >= watch_until {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    print_row(start.elapsed().as_secs_f64(), &ends, addr)?;

    println!();
    let waited = start.elapsed().as_secs_f64();
    let plain_state = netns::state_of(ends[0].1, addr)?.map(|s| s.state);
    let check = |what: &str, got: &Option<(f64, String)>, expected: f64| -> anyhow::Result<f64> {
        match got {
            Some((at, error)) if error == "ETIMEDOUT" => {
                println!("{what}: ETIMEDOUT after {at:.2} s (expected {expected:.0} s)");
                // A timer fires late on a loaded machine, hardly ever early.
                if *at < expected - 0.3 || *at > expected + 3.0 {
                    bail!("{what} failed after {at:.2} s, not about {expected:.0} s");
                }
                Ok(*at)
            }
            Some((at, error)) => bail!("{what} failed after {at:.2} s with {error}, not ETIMEDOUT"),
            None => bail!("{what} never failed in {waited:.1} s"),
        }
    };
    println!(
        "no keepalive: still {} after {waited:.1} s, read still waiting",
        plain_state.map_or("(gone)", TcpState::name)
    );
    let keepalive_at = check(
        &format!(
            "keepalive ({} + {} x {} s)",
            cli.idle, cli.count, cli.interval
        ),
        &failed[1],
        keepalive_expected,
    )?;
    let user_at = check(
        &format!("TCP_USER_TIMEOUT {} s", cli.user_timeout),
        &failed[2],
        user_expected,
    )?;
    if failed[0].is_some() || plain_state != Some(TcpState::Established) {
        bail!("the connection without keepalive should have stayed ESTABLISHED");
    }
    println!();
    println!(
        "observed: after the peer vanished, keepalive dropped its connection with ETIMEDOUT after {keepalive_at:.1} s, TCP_USER_TIMEOUT after {user_at:.1} s, and the connection without either stayed ESTABLISHED for {waited:.1} s"
    );
    Ok(())
}

fn connect(listener: &TcpListener) -> anyhow::Result<(TcpStream, TcpStream)> {
    let client = TcpStream::connect(listener.local_addr()?).context("connect")?;
    let (server, _) = listener.accept().context("accept")?;
    Ok((client, server))
}

/// One line of states, for each connection: its state, then the timer running ("ka": keepalive,
/// "rto": retransmission) with the time left and the probes or retransmissions so far.
fn print_row(now: f64, ends: &[(&str, SocketAddr); 3], peer: SocketAddr) -> anyhow::Result<()> {
    let mut cells = Vec::new();
    for &(_, local) in ends {
        cells.push(match netns::state_of(local, peer)? {
            Some(s) => match s.timer {
                TcpTimer::Keepalive => {
                    format!("{} ka {:.2}s probes {}", s.state, left(&s), s.probes)
                }
                TcpTimer::Retransmit => {
                    format!("{} rto {:.2}s retrans {}", s.state, left(&s), s.retransmits)
                }
                TcpTimer::None => s.state.to_string(),
                other => format!("{} {other:?} {:.2}s", s.state, left(&s)),
            },
            None => "(gone)".to_string(),
        });
    }
    println!(
        "{now:>6.2}s  {:<32} {:<32} {:<32}",
        cells[0], cells[1], cells[2]
    );
    Ok(())
}

fn left(socket: &netns::TcpSocket) -> f64 {
    socket.timer_left.as_secs_f64()
}

/// Whether a read would return now (data, end of file or an error), without reading.
fn readable(stream: &TcpStream) -> anyhow::Result<bool> {
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
    Ok(poll(&mut fds, 0u8)? > 0)
}

fn read_error(stream: &mut TcpStream) -> String {
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(0) => "EOF".into(),
        Ok(n) => format!("{n} bytes"),
        Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => "ETIMEDOUT".into(),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => "ECONNRESET".into(),
        Err(e) => e.to_string(),
    }
}

/// 7875 -> "2 h 11 min 15 s"
fn hms(secs: u64) -> String {
    format!("{} h {} min {} s", secs / 3600, secs % 3600 / 60, secs % 60)
}
