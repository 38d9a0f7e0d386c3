//! # Lab 10: the four-way close, TIME_WAIT, a reset, and a simultaneous close
//!
//! ```text
//! cargo run --bin tcp-close
//! cargo run --bin tcp-close -- --hold 20      # time to look at the TIME_WAIT socket with ss
//! ```
//!
//! Part 1, the ordinary close. The side that closes first sends a FIN and goes to FIN_WAIT1;
//! when the FIN is acknowledged, FIN_WAIT2; the other side is in CLOSE_WAIT until its program
//! closes too, then LAST_ACK until its own FIN is acknowledged; then the first side is in
//! TIME_WAIT, for 60 s (TCP_TIMEWAIT_LEN, fixed in the kernel's source: no sysctl changes it, and
//! it is not the "2 MSL = 4 minutes" of RFC 793), while the other side's socket is gone.
//! On loopback FIN_WAIT1 and LAST_ACK last microseconds, so the demo holds each FIN behind
//! bytes the peer has not read yet (small buffers, the peer's receive window closed): a FIN
//! goes out only after the data before it, which makes both states visible for as long as the
//! demo likes.
//!
//! Part 2, `SO_LINGER {on, 0}`: `close` sends a RST instead of a FIN. No TIME_WAIT at all, and
//! the peer's next `read` fails with ECONNRESET.
//!
//! Part 3, the simultaneous close: both ends send their FIN before either has received the
//! other's. An end that receives a FIN while its own is unacknowledged goes to CLOSING, and both
//! ends end in TIME_WAIT.
//!
//! It runs in a private network namespace, so the TIME_WAIT sockets vanish with the demo.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use netlab_core::netns::{self, PrivateNet, TcpState, TcpTimer};
use netlab_core::{parse_args, process};
use socket2::{Domain, Socket, Type};

/// Shows who ends in TIME_WAIT, for how long, what SO_LINGER 0 does, and a simultaneous close.
#[derive(Parser)]
#[command(name = "tcp-close", version)]
struct Cli {
    /// Seconds to pause with the socket in TIME_WAIT, to look at it with ss.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    hold: u64,
}

/// Socket buffers small enough that a few writes fill them (the kernel doubles the value).
const SMALL_BUFFER: usize = 16 * 1024;

fn main() {
    let cli: Cli = parse_args();
    let net = PrivateNet::enter_or_skip("tcp-close");
    netlab_core::exit_on_error("tcp-close", run(cli, &net));
}

fn run(cli: Cli, net: &PrivateNet) -> anyhow::Result<()> {
    println!(
        "tcp-close: pid {}, in a private network namespace (lo up)",
        std::process::id()
    );
    let listener = listen()?;
    let time_wait_left = ordinary_close(&cli, net, &listener)?;
    linger_zero(&listener)?;
    simultaneous_close(&listener)?;
    println!();
    println!(
        "observed: the side that closed first went FIN_WAIT1 -> FIN_WAIT2 -> TIME_WAIT ({time_wait_left:.1} s left, counting down), the other CLOSE_WAIT -> LAST_ACK -> gone; SO_LINGER 0 sent a RST (no TIME_WAIT, the peer read ECONNRESET); a simultaneous close left both ends in TIME_WAIT"
    );
    Ok(())
}

fn ordinary_close(cli: &Cli, net: &PrivateNet, listener: &TcpListener) -> anyhow::Result<f64> {
    let (mut client, mut server) = connect(listener)?;
    let (c, s) = (client.local_addr()?, server.local_addr()?);
    println!();
    println!("1. an ordinary close: client {c}, server end {s}");
    show("connected", c, s)?;

    let queued = fill(&mut client)?;
    client.shutdown(Shutdown::Write)?; // sends the FIN (close would too; the client still reads)
    let (client_state, _) = show(
        &format!("client: {queued} bytes the server has not read, then shutdown(SHUT_WR): its FIN waits behind them"),
        c,
        s,
    )?;
    expect("client", client_state, TcpState::FinWait1)?;

    let got = read_to_eof(&mut server)?;
    // The server's kernel may delay the ACK of a FIN (up to about 40 ms) in case it can send
    // its own FIN with it.
    process::eventually(Duration::from_secs(1), || {
        state(c, s) == Some(TcpState::FinWait2)
    });
    let (client_state, server_state) = show(
        &format!("server: read {got} bytes, then read returned 0 (the FIN): it must close now"),
        c,
        s,
    )?;
    expect("client", client_state, TcpState::FinWait2)?;
    expect("server", server_state, TcpState::CloseWait)?;

    let queued = fill(&mut server)?;
    drop(server); // close(2): its FIN waits behind the bytes the client has not read
    let (_, server_state) = show(
        &format!("server: {queued} bytes the client has not read, then close(): LAST_ACK"),
        c,
        s,
    )?;
    expect("server", server_state, TcpState::LastAck)?;

    let got = read_to_eof(&mut client)?;
    process::eventually(Duration::from_secs(1), || state(s, c).is_none());
    let (client_state, server_state) = show(
        &format!("client: read {got} bytes and the server's FIN, sent the last ACK"),
        c,
        s,
    )?;
    expect("client", client_state, TcpState::TimeWait)?;
    if let Some(server_state) = server_state {
        bail!("the server's socket should be gone, it is {server_state}");
    }
    drop(client);

    // The TIME_WAIT timer, read twice, two seconds apart.
    let first = time_wait_left(c, s)?;
    println!("   TIME_WAIT timer of {c}: {first:.2} s left");
    print_indented(&netns::ss(&["-tano", "state", "time-wait"]));
    std::thread::sleep(Duration::from_secs(2));
    let second = time_wait_left(c, s)?;
    println!("   two seconds later:    {second:.2} s left (the socket goes when it reaches 0)");
    println!(
        "   net.ipv4.tcp_fin_timeout = {} is not this timer: it limits FIN_WAIT2 of a closed socket",
        netns::sysctl("net.ipv4.tcp_fin_timeout")?
    );
    println!(
        "   in another terminal: {} ss -tano state time-wait",
        net.nsenter()
    );
    if cli.hold > 0 {
        println!("   (holding for {} s)", cli.hold);
        std::thread::sleep(Duration::from_secs(cli.hold));
    }
    if !(55.0..=60.0).contains(&first) || !(1.0..=4.0).contains(&(first - second)) {
        bail!("the TIME_WAIT timer should start near 60 s and count down by about 2 s in 2 s");
    }
    Ok(first)
}

fn linger_zero(listener: &TcpListener) -> anyhow::Result<()> {
    let (client, mut server) = connect(listener)?;
    let (c, s) = (client.local_addr()?, server.local_addr()?);
    println!();
    println!("2. SO_LINGER {{on, 0}}: client {c} closes with a reset");
    let before = netns::counters()?;
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO))?;
    drop(client); // close(2) with linger 0: RST, the socket is freed at once
    let after = netns::counters()?;
    let resets = after["Tcp.OutRsts"] - before["Tcp.OutRsts"];
    let (client_state, server_state) = show("client: close() with linger 0", c, s)?;
    let mut buf = [0u8; 16];
    let read = server.read(&mut buf);
    println!(
        "   Tcp OutRsts +{resets}; server: read -> {}",
        match &read {
            Ok(n) => format!("{n} bytes"),
            Err(e) => errno_name(e),
        }
    );
    if resets != 1 || client_state.is_some() || server_state.is_some() {
        bail!("expected one RST and neither end left (no TIME_WAIT)");
    }
    if read.as_ref().err().map(io::Error::kind) != Some(io::ErrorKind::ConnectionReset) {
        bail!("the server's read should fail with ECONNRESET");
    }
    Ok(())
}

fn simultaneous_close(listener: &TcpListener) -> anyhow::Result<()> {
    let (mut a, mut b) = connect(listener)?;
    let (a_addr, b_addr) = (a.local_addr()?, b.local_addr()?);
    println!();
    println!("3. a simultaneous close: {a_addr} and {b_addr} both shut down before either reads");
    // Each FIN waits behind bytes the other has not read, so both are sent before either
    // arrives: the FINs cross.
    fill(&mut a)?;
    fill(&mut b)?;
    a.shutdown(Shutdown::Write)?;
    b.shutdown(Shutdown::Write)?;
    show("both: shutdown(SHUT_WR)", a_addr, b_addr)?;

    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    let mut seen = (vec![], vec![]);
    note(&mut seen.0, state(a_addr, b_addr));
    note(&mut seen.1, state(b_addr, a_addr));
    let (mut a_done, mut b_done) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(a_done && b_done) && Instant::now() < deadline {
        a_done |= drain(&mut a)?;
        note(&mut seen.0, state(a_addr, b_addr));
        b_done |= drain(&mut b)?;
        note(&mut seen.1, state(b_addr, a_addr));
        note(&mut seen.0, state(a_addr, b_addr));
        std::thread::sleep(Duration::from_millis(1));
    }
    process::eventually(Duration::from_secs(1), || {
        state(a_addr, b_addr) == Some(TcpState::TimeWait)
            && state(b_addr, a_addr) == Some(TcpState::TimeWait)
    });
    note(&mut seen.0, state(a_addr, b_addr));
    note(&mut seen.1, state(b_addr, a_addr));
    let path = |states: &[TcpState]| {
        let names: Vec<&str> = states.iter().map(|s| s.name()).collect();
        names.join(" -> ")
    };
    println!("   {a_addr}: {}", path(&seen.0));
    println!("   {b_addr}: {}", path(&seen.1));
    let (sa, sb) = show("both read to EOF", a_addr, b_addr)?;
    if sa != Some(TcpState::TimeWait) || sb != Some(TcpState::TimeWait) {
        bail!("after a simultaneous close both ends should be in TIME_WAIT");
    }
    if !seen.0.contains(&TcpState::Closing) && !seen.1.contains(&TcpState::Closing) {
        bail!("neither end passed through CLOSING: the FINs did not cross");
    }
    Ok(())
}

/// A listener whose accepted sockets have small receive buffers (set before the handshake, so
/// the window is small from the start).
fn listen() -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_recv_buffer_size(SMALL_BUFFER)?;
    socket.set_send_buffer_size(SMALL_BUFFER)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(16)?;
    Ok(socket.into())
}

/// A client with small buffers, connected, and the server's end of it.
fn connect(listener: &TcpListener) -> anyhow::Result<(TcpStream, TcpStream)> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_recv_buffer_size(SMALL_BUFFER)?;
    socket.set_send_buffer_size(SMALL_BUFFER)?;
    socket.connect(&listener.local_addr()?.into())?;
    let (server, _) = listener.accept().context("accept")?;
    Ok((socket.into(), server))
}

/// Writes until the send buffer is full and the peer's window closed (EAGAIN); returns the bytes.
fn fill(stream: &mut TcpStream) -> anyhow::Result<usize> {
    stream.set_nonblocking(true)?;
    let chunk = [b'x'; 4096];
    let mut total = 0;
    loop {
        match stream.write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e.into()),
        }
    }
    stream.set_nonblocking(false)?;
    Ok(total)
}

/// Blocking reads until end of file; returns the bytes read.
fn read_to_eof(stream: &mut TcpStream) -> anyhow::Result<usize> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink).context("read to EOF")?;
    Ok(sink.len())
}

/// Non-blocking reads until EAGAIN; true once end of file was read.
fn drain(stream: &mut TcpStream) -> anyhow::Result<bool> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Appends a state to a path of states unless it repeats the last one.
fn note(path: &mut Vec<TcpState>, state: Option<TcpState>) {
    if let Some(state) = state {
        if path.last() != Some(&state) {
            path.push(state);
        }
    }
}

fn state(local: SocketAddr, remote: SocketAddr) -> Option<TcpState> {
    netns::state_of(local, remote)
        .ok()
        .flatten()
        .map(|s| s.state)
}

/// Prints a step and both ends' states (from /proc/net/tcp); returns them.
fn show(
    step: &str,
    client: SocketAddr,
    server: SocketAddr,
) -> anyhow::Result<(Option<TcpState>, Option<TcpState>)> {
    let c = netns::state_of(client, server)?;
    let s = netns::state_of(server, client)?;
    let name = |row: &Option<netns::TcpSocket>| match row {
        Some(row) => format!(
            "{} (send-q {}, recv-q {})",
            row.state, row.send_queue, row.recv_queue
        ),
        None => "(gone)".to_string(),
    };
    println!("   {step}");
    println!("   {:>22} {}", format!("{client}:"), name(&c));
    println!("   {:>22} {}", format!("{server}:"), name(&s));
    Ok((c.map(|r| r.state), s.map(|r| r.state)))
}

fn expect(end: &str, seen: Option<TcpState>, want: TcpState) -> anyhow::Result<()> {
    if seen != Some(want) {
        bail!("the {end} should be in {want} here, it is {seen:?}");
    }
    Ok(())
}

fn time_wait_left(local: SocketAddr, remote: SocketAddr) -> anyhow::Result<f64> {
    match netns::state_of(local, remote)? {
        Some(row) if row.state == TcpState::TimeWait && row.timer == TcpTimer::TimeWait => {
            Ok(row.timer_left.as_secs_f64())
        }
        other => bail!("expected a TIME_WAIT socket with its timer, found {other:?}"),
    }
}

fn errno_name(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionReset => "ECONNRESET".into(),
        _ => e.to_string(),
    }
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("     {line}");
    }
}
