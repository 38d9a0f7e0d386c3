//! The edge-triggered servers (echo-epoll-et, echo-mio) stop draining a socket after a short
//! read by default (Netty's rule): a `recvfrom` that returned fewer bytes than it asked for
//! found the receive queue empty, and any byte that arrives after it raises a new edge, so the
//! `recvfrom` that would only say EAGAIN is saved. If that were wrong, some byte would sit
//! unreported and its echo would never come: every test here fails on 5 s without progress.
//!
//! Over TCP and Unix stream sockets, in the patterns that put the next bytes right behind a
//! short read: messages just under, at and over the 64 KiB read; a stream of odd-sized writes
//! read back while it is sent; many clients at once; a half-close right after the last bytes.
//! The whole behaviour harness (tests/echo.rs) runs the same default too.

mod common;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{first_difference, pattern, Client, Launch, ServerProcess, Transport};

const SERVERS: [&str; 2] = [
    env!("CARGO_BIN_EXE_echo-epoll-et"),
    env!("CARGO_BIN_EXE_echo-mio"),
];
const STALL: Duration = Duration::from_secs(5);

fn start(program: &str, transport: Transport) -> ServerProcess {
    Launch::new(program)
        .listen_on(transport)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Reads exactly `expected.len()` bytes and checks them; panics after STALL without progress.
fn read_back(client: &mut Client, expected: &[u8], what: &str) {
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = 0;
    let mut buf = vec![0; 64 * 1024];
    let mut last_progress = Instant::now();
    while got < expected.len() {
        let want = (expected.len() - got).min(buf.len());
        match client.read(&mut buf[..want]) {
            Ok(0) => panic!(
                "{what}: end of file after {got} of {} bytes",
                expected.len()
            ),
            Ok(n) => {
                if let Some(at) = first_difference(&expected[got..got + n], &buf[..n]) {
                    panic!("{what}: echo differs at byte {}", got + at);
                }
                got += n;
                last_progress = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                assert!(
                    last_progress.elapsed() < STALL,
                    "{what}: stalled after {got} of {} bytes",
                    expected.len()
                );
            }
            Err(e) => panic!("{what}: read after {got} bytes: {e}"),
        }
    }
}

/// Sends `message` from another thread (so a large one cannot deadlock on full buffers) and
/// reads the echo here.
fn exchange(client: &mut Client, message: &Arc<Vec<u8>>, what: &str) {
    let writer = {
        let mut client = client.try_clone().unwrap();
        let message = Arc::clone(message);
        thread::spawn(move || client.write_all(&message))
    };
    read_back(client, message, what);
    writer.join().unwrap().unwrap();
}

/// One connection, one message after another, each read back before the next: sizes around
/// the server's 64 KiB read, where a read comes back full or one byte short.
#[test]
fn messages_around_the_read_size() {
    for program in SERVERS {
        for transport in [Transport::Tcp, Transport::Unix] {
            let server = start(program, transport);
            let mut client = server.connect();
            for (i, size) in [
                1, 100, 65_535, 65_536, 65_537, 131_071, 131_072, 131_073, 200_000, 1_000_000,
            ]
            .into_iter()
            .enumerate()
            {
                let message = Arc::new(pattern(i as u64, size));
                exchange(
                    &mut client,
                    &message,
                    &format!("{} {size} bytes", server.describe()),
                );
            }
        }
    }
}

/// A writer sends 16 MiB in odd sizes (1 byte to 100 KB, now and then a pause of a
/// millisecond), while this thread reads the echo back as it comes.
#[test]
fn a_stream_of_odd_sized_writes() {
    const SIZE: usize = 16 << 20;
    for program in SERVERS {
        for transport in [Transport::Tcp, Transport::Unix] {
            let server = start(program, transport);
            let mut client = server.connect();
            let message = Arc::new(pattern(7, SIZE));
            let writer = {
                let mut client = client.try_clone().unwrap();
                let message = Arc::clone(&message);
                thread::spawn(move || {
                    let mut sent = 0;
                    let mut seed = 12345u64;
                    while sent < SIZE {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let len = ((seed >> 33) as usize % 100_000 + 1).min(SIZE - sent);
                        client.write_all(&message[sent..sent + len])?;
                        sent += len;
                        if seed % 16 == 0 {
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                    io::Result::Ok(())
                })
            };
            read_back(&mut client, &message, &server.describe());
            writer.join().unwrap().unwrap();
        }
    }
}

/// 20 clients at once, each 200 round trips of a size drawn from 1 byte to 150 KB.
#[test]
fn many_clients_at_once() {
    for program in SERVERS {
        for transport in [Transport::Tcp, Transport::Unix] {
            let server = start(program, transport);
            let clients: Vec<_> = (0..20u64)
                .map(|id| {
                    let (addr, name) = (server.addr.clone(), server.describe());
                    thread::spawn(move || {
                        let mut client = addr.connect().unwrap();
                        let mut seed = id + 1;
                        for round in 0..200 {
                            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                            let size = (seed >> 33) as usize % 150_000 + 1;
                            let message = Arc::new(pattern(seed, size));
                            let what = format!("{name} client {id} round {round}");
                            exchange(&mut client, &message, &what);
                        }
                    })
                })
                .collect();
            for client in clients {
                client.join().unwrap();
            }
        }
    }
}

/// The last bytes and the FIN arrive together, right behind a short read: everything comes
/// back, then end of file.
#[test]
fn half_close_right_after_the_last_bytes() {
    for program in SERVERS {
        for transport in [Transport::Tcp, Transport::Unix] {
            let server = start(program, transport);
            for size in [10, 65_537, 300_000] {
                let mut client = server.connect();
                let message = pattern(size as u64, size);
                let writer = {
                    let mut client = client.try_clone().unwrap();
                    let message = message.clone();
                    thread::spawn(move || {
                        client.write_all(&message)?;
                        client.shutdown(Shutdown::Write)
                    })
                };
                let what = format!("{} {size} bytes then FIN", server.describe());
                read_back(&mut client, &message, &what);
                writer.join().unwrap().unwrap();
                client.set_read_timeout(Some(STALL)).unwrap();
                let mut rest = Vec::new();
                client.read_to_end(&mut rest).unwrap();
                assert!(
                    rest.is_empty(),
                    "{what}: {} bytes after the echo",
                    rest.len()
                );
            }
        }
    }
}
