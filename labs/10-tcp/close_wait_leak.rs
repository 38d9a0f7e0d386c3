//! # Lab 10: CLOSE_WAIT is a server that forgot to close
//!
//! ```text
//! cargo run --bin close-wait-leak                      # 5 clients, the leaky server then the fixed one
//! cargo run --bin close-wait-leak -- --clients 20 --hold 30
//! ```
//!
//! When the client closes first, its FIN reaches the server: the server's socket goes to
//! CLOSE_WAIT ("the peer has closed, waiting for *you* to close") and its `read` returns 0.
//! CLOSE_WAIT has no timer: the kernel waits for the program's `close` for as long as the
//! program runs. A server that reads EOF and forgets the `close` keeps one socket and one
//! descriptor per client that ever came, until it runs out of descriptors (`accept` fails with
//! EMFILE). The same server with its one `close` leaves none. The client's end waits meanwhile in
//! FIN_WAIT2 (for at most `net.ipv4.tcp_fin_timeout` seconds, since nobody holds it any more).
//!
//! It runs in a private network namespace of its own, so the counts are this demo's alone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use netlab_core::netns::{self, PrivateNet, TcpState};
use netlab_core::{parse_args, process, procfs};

/// A server that reads EOF and never closes piles up CLOSE_WAIT; the fixed one does not.
#[derive(Parser)]
#[command(name = "close-wait-leak", version)]
struct Cli {
    /// How many clients connect, send a line and close, one after another.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=500))]
    clients: u32,

    /// Seconds to pause with the leaked sockets in place, to look at them with ss.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    hold: u64,
}

fn main() {
    let cli: Cli = parse_args();
    let net = PrivateNet::enter_or_skip("close-wait-leak");
    netlab_core::exit_on_error("close-wait-leak", run(cli, &net));
}

fn run(cli: Cli, net: &PrivateNet) -> anyhow::Result<()> {
    let me = std::process::id();
    println!("close-wait-leak: pid {me}, in a private network namespace (lo up)");
    let leaky = serve(&cli, net, Server::NeverCloses)?;
    let fixed = serve(&cli, net, Server::Closes)?;

    println!();
    let n = cli.clients as usize;
    if leaky != (n, n) {
        bail!(
            "the leaky server held {} CLOSE_WAIT sockets and {} extra fds, expected {n} of each",
            leaky.0,
            leaky.1
        );
    }
    if fixed != (0, 0) {
        bail!(
            "the fixed server still held {} CLOSE_WAIT sockets and {} extra fds",
            fixed.0,
            fixed.1
        );
    }
    println!(
        "observed: without close, CLOSE_WAIT and the server's fds grew by {n} (one per client); with close, none were left"
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Server {
    NeverCloses,
    Closes,
}

/// Runs one server through `--clients` clients; returns (CLOSE_WAIT sockets, extra fds) at the end.
fn serve(cli: &Cli, net: &PrivateNet, server: Server) -> anyhow::Result<(usize, usize)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let addr = listener.local_addr()?;
    let me = std::process::id() as i32;
    let fds_before = procfs::open_fds(me)?;
    println!();
    match server {
        Server::NeverCloses => println!("1. a server on {addr} that reads to EOF and never closes"),
        Server::Closes => println!("2. the same server with the missing close(conn) after EOF"),
    }
    println!(
        "{:>6}  {:<12} {:<12} {:>16} {:>11}",
        "client", "client end", "server end", "CLOSE_WAIT total", "server fds"
    );

    let mut kept = Vec::new();
    let mut clients = Vec::new();
    let mut last = (0, 0);
    for i in 1..=cli.clients {
        // The client: connect, one line, close. Its FIN follows the line.
        let mut client = TcpStream::connect(addr).context("connect")?;
        client.write_all(b"hello\n")?;
        let client_addr = client.local_addr()?;
        drop(client);

        // The server: accept, read until read returns 0 (the FIN), then forget or close.
        let (mut conn, _) = listener.accept().context("accept")?;
        let mut bytes = Vec::new();
        conn.read_to_end(&mut bytes)?;
        match server {
            Server::NeverCloses => kept.push(conn), // the bug: the socket stays, no close(2)
            Server::Closes => drop(conn),           // close(2)
        }
        if server == Server::Closes {
            // The server's FIN and the client's ACK cross on loopback within the close call;
            // give a loaded machine a moment before reading the states.
            process::eventually(Duration::from_secs(1), || {
                state(addr, client_addr) == "(gone)"
            });
        }

        // One snapshot of the table for the whole row (each read walks every socket).
        let table = netns::sockets_on_port(addr.port())?;
        let state_in = |local: SocketAddr, remote: SocketAddr| {
            table
                .iter()
                .find(|s| s.local == local && s.remote == remote)
                .map_or("(gone)".to_string(), |s| s.state.to_string())
        };
        let close_wait = table
            .iter()
            .filter(|s| s.local == addr && s.state == TcpState::CloseWait)
            .count();
        let fds = procfs::open_fds(me)?.saturating_sub(fds_before);
        println!(
            "{i:>6}  {:<12} {:<12} {close_wait:>16} {:>11}",
            state_in(client_addr, addr),
            state_in(addr, client_addr),
            format!("+{fds}")
        );
        last = (close_wait, fds);
        clients.push(client_addr);
    }
    // Right after its close, a client end shows FIN_WAIT1: the server's kernel delays the ACK
    // of a FIN (delayed ACK, at least 40 ms) in case its own FIN can ride along.
    let waiting = std::time::Instant::now();
    process::eventually(Duration::from_secs(2), || {
        clients.iter().all(|&c| state(c, addr) != "FIN_WAIT1")
    });
    let mut later: Vec<String> = clients.iter().map(|&c| state(c, addr)).collect();
    later.dedup();
    println!(
        "{} ms later the client ends are: {}",
        waiting.elapsed().as_millis(),
        later.join(", ")
    );
    if server == Server::NeverCloses {
        println!("see them from another terminal:");
        println!("  {} ss -tan state close-wait", net.nsenter());
        println!("  ls -l /proc/{me}/fd        (one socket:[INODE] per client)");
        if cli.hold > 0 {
            println!("(holding them for {} s)", cli.hold);
            std::thread::sleep(Duration::from_secs(cli.hold));
        }
    }
    drop(kept); // the process would keep them until it exits; the demo closes them here
    Ok(last)
}

/// The state of the socket from `local` to `remote`, or "(gone)" when the kernel forgot it.
fn state(local: SocketAddr, remote: SocketAddr) -> String {
    match netns::state_of(local, remote) {
        Ok(Some(socket)) => socket.state.to_string(),
        Ok(None) => "(gone)".into(),
        Err(e) => format!("({e})"),
    }
}
