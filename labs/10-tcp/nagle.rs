//! # Lab 10: Nagle's algorithm meets the delayed ACK (write-write-read)
//!
//! ```text
//! cargo run --release --bin nagle                     # 40 requests per variant
//! cargo run --release --bin nagle -- --requests 200 --variants nagle,nodelay
//! strace -T -e trace=sendto,writev,recvfrom,setsockopt ./target/release/nagle --variants nagle,cork --requests 3
//! ```
//!
//! A client writes a request in two small pieces (a header, then a body) and then reads the
//! reply. Nagle's algorithm (on by default) sends the first piece at once but holds the second
//! while the first is unacknowledged, to gather small writes into one segment. The server has
//! nothing to send yet (it waits for the whole request), so its kernel delays the ACK, hoping to
//! send it with the reply: on Linux at least 40 ms (TCP_ATO_MIN). Each waits for the other
//! until the delayed-ACK timer fires, so every request costs about 40 ms, on loopback. (Not the
//! first: a new connection starts in "quick ACK" mode and acknowledges at once for a while.)
//!
//! The three fixes: `TCP_NODELAY` (send each write at once), one `writev` with both pieces
//! (one segment, nothing left to hold), or `TCP_CORK` around the two writes (hold everything
//! until uncorked, then send it as one). Each takes microseconds.
//!
//! No namespace needed: it runs on the host's loopback, on a free port.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use netlab_core::parse_args;
use socket2::SockRef;

/// Times write-write-read round trips with Nagle on, TCP_NODELAY, one writev, and TCP_CORK.
#[derive(Parser)]
#[command(name = "nagle", version)]
struct Cli {
    /// Round trips per variant (the median is reported).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=2000))]
    requests: u32,

    /// Which variants to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "nagle,nodelay,writev,cork"
    )]
    variants: Vec<Variant>,
}

#[derive(Clone, Copy, PartialEq, Debug, ValueEnum)]
enum Variant {
    /// Two writes, Nagle on (the default).
    Nagle,
    /// TCP_NODELAY, then two writes.
    Nodelay,
    /// Both pieces in one writev.
    Writev,
    /// TCP_CORK on, two writes, TCP_CORK off.
    Cork,
}

impl Variant {
    fn calls(self) -> &'static str {
        match self {
            Variant::Nagle => "sendto, sendto, recvfrom",
            Variant::Nodelay => "setsockopt(TCP_NODELAY) once; sendto, sendto, recvfrom",
            Variant::Writev => "writev, recvfrom",
            Variant::Cork => {
                "setsockopt(TCP_CORK, 1), sendto, sendto, setsockopt(TCP_CORK, 0), recvfrom"
            }
        }
    }
}

const HEADER: &[u8] = b"GET /item HTTP/1.1\r\n"; // the two pieces of a request: each far below one MSS
const BODY: &[u8] = b"Host: example\r\n\r\n";
const REPLY: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

fn main() {
    let cli: Cli = parse_args();
    netlab_core::exit_on_error("nagle", run(cli));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let addr = listener.local_addr()?;
    println!("nagle: pid {}, server on {addr}", std::process::id());
    println!(
        "each request: write {} bytes, write {} bytes, read the {}-byte reply; {} requests per variant",
        HEADER.len(),
        BODY.len(),
        REPLY.len(),
        cli.requests
    );
    let me = std::env::current_exe().map_or("nagle".into(), |p| p.display().to_string());
    println!(
        "the client's calls and the time each took (-T; the server is another thread, not traced without -f):\n  strace -T -e trace=sendto,writev,recvfrom,setsockopt {me} --variants nagle,cork --requests 3"
    );
    let connections = cli.variants.len();
    let server = std::thread::spawn(move || serve(listener, connections));

    println!();
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10}  client's calls per request",
        "variant", "min", "median", "p90", "max"
    );
    let mut medians = Vec::new();
    for &variant in &cli.variants {
        let times = measure(addr, variant, cli.requests)?;
        let [min, median, p90, max] = [0.0, 0.5, 0.9, 1.0].map(|q| quantile(&times, q));
        println!(
            "{:<8} {:>10} {:>10} {:>10} {:>10}  {}",
            format!("{variant:?}").to_lowercase(),
            ms(min),
            ms(median),
            ms(p90),
            ms(max),
            variant.calls()
        );
        medians.push((variant, median));
    }
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;

    println!();
    let nagle = medians
        .iter()
        .find(|(v, _)| *v == Variant::Nagle)
        .map(|&(_, m)| m);
    let fast: Vec<_> = medians
        .iter()
        .filter(|(v, _)| *v != Variant::Nagle)
        .collect();
    if let Some(nagle) = nagle {
        // Linux's delayed ACK waits at least 40 ms; a loaded machine adds to it, never removes.
        if nagle < Duration::from_millis(20) {
            bail!(
                "with Nagle on, the median round trip was {}: no delayed-ACK stall seen",
                ms(nagle)
            );
        }
        for &&(variant, median) in &fast {
            if median * 5 > nagle {
                bail!(
                    "{variant:?}: median {} is not far below Nagle's {}",
                    ms(median),
                    ms(nagle)
                );
            }
        }
        let others: Vec<String> = fast
            .iter()
            .map(|(v, m)| format!("{} {}", format!("{v:?}").to_lowercase(), ms(*m)))
            .collect();
        println!(
            "observed: write-write-read with Nagle on waited for the delayed ACK (median {}); {}",
            ms(nagle),
            if others.is_empty() {
                "no other variant run".to_string()
            } else {
                others.join(", ")
            }
        );
    } else {
        println!("observed: medians as above (run the nagle variant too to compare)");
    }
    Ok(())
}

/// One connection, `requests` write-write-read round trips in the given style; their times.
fn measure(
    addr: std::net::SocketAddr,
    variant: Variant,
    requests: u32,
) -> anyhow::Result<Vec<Duration>> {
    let mut stream = TcpStream::connect(addr).context("connect")?;
    if variant == Variant::Nodelay {
        stream.set_nodelay(true)?;
    }
    let mut reply = vec![0u8; REPLY.len()];
    let mut times = Vec::with_capacity(requests as usize);
    for _ in 0..requests {
        let start = Instant::now();
        match variant {
            Variant::Nagle | Variant::Nodelay => {
                stream.write_all(HEADER)?;
                stream.write_all(BODY)?;
            }
            Variant::Writev => {
                let both = [IoSlice::new(HEADER), IoSlice::new(BODY)];
                let n = stream.write_vectored(&both)?;
                if n != HEADER.len() + BODY.len() {
                    bail!("writev wrote {n} bytes of {}", HEADER.len() + BODY.len());
                }
            }
            Variant::Cork => {
                SockRef::from(&stream).set_tcp_cork(true)?;
                stream.write_all(HEADER)?;
                stream.write_all(BODY)?;
                SockRef::from(&stream).set_tcp_cork(false)?; // uncork: what was held goes out now, as one segment
            }
        }
        stream.read_exact(&mut reply)?;
        times.push(start.elapsed());
    }
    Ok(times)
}

/// The server: for each of `connections` connections, reads whole requests and answers each
/// one, until EOF.
fn serve(listener: TcpListener, connections: usize) -> anyhow::Result<()> {
    let request_len = HEADER.len() + BODY.len();
    let mut request = vec![0u8; request_len];
    for conn in listener.incoming().take(connections) {
        let mut conn = conn?;
        loop {
            match conn.read_exact(&mut request) {
                Ok(()) => conn.write_all(REPLY)?,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

fn quantile(times: &[Duration], q: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.0} us", ms * 1000.0)
    }
}
