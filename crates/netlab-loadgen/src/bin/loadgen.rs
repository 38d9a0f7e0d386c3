//! `loadgen`: drive an echo server (or an HTTP server) with many connections and report
//! throughput, latency, errors, and what it cost the client and the server.
//!
//! ```text
//! loadgen 127.0.0.1:7000 -c 50 -d 10s          one server, closed loop
//! loadgen unix:/tmp/echo.sock -R 20k -d 10s    open loop, 20k msg/s, corrected latency
//! loadgen compare                              every echo server model, side by side
//! loadgen sweep --idle 0,100,1000,10000        the cost of idle connections, per model
//! loadgen http http://127.0.0.1:8080/file -c 50 -d 10s --server-pid PID
//! ```
//!
//! Exit status: 0 when every message came back intact, 1 when any error occurred (counted by
//! kind in the report), 2 for bad arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use netlab_loadgen::commands::{self, OneRun};
use netlab_loadgen::compare::{self, Plan, Transport};
use netlab_loadgen::report::Format;
use netlab_loadgen::servers;
use netlab_loadgen::sweep::{Dimension, SweepChoice};
use netlab_loadgen::target::HttpUrl;
use netlab_loadgen::units::{
    parse_count, parse_count_list, parse_duration, parse_number, parse_on_off, parse_pid,
    parse_size_list,
};
use netlab_loadgen::{BadArgument, Protocol, Target, Workload};

/// Load generator for the netlab echo servers: many connections from few threads (mio), every
/// echoed byte checked, latency percentiles, client and server cost per message.
#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    allow_negative_numbers = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Server to load: HOST:PORT or unix:PATH.
    #[arg(required = true)]
    target: Option<String>,

    #[command(flatten)]
    shape: Shape,

    /// Pid of the server, to report its CPU, context switches, RSS, threads and fds (/proc).
    #[arg(long, value_name = "PID", value_parser = parse_pid)]
    server_pid: Option<i32>,

    #[command(flatten)]
    load: LoadFlags,
}

#[derive(Subcommand)]
enum Command {
    /// Run the same workload against every echo server model and print them side by side;
    /// write results.json, results.csv and SVG charts into an output folder.
    Compare(CompareArgs),
    /// Vary one dimension (--idle, --connections or --size, comma-separated) for every model.
    Sweep(SweepArgs),
    /// HTTP/1.1 keep-alive GET load: requests/s, GB/s, latency, server cost per request/GiB.
    Http(HttpArgs),
}

/// The size of the load.
#[derive(Args, Clone)]
struct Shape {
    /// Active connections (each carries messages).
    #[arg(short = 'c', long, default_value = "50", value_parser = parse_count)]
    connections: u64,

    /// Extra connections held open and silent, beside the active ones.
    #[arg(long, default_value = "0", value_parser = parse_count)]
    idle: u64,

    /// Message size in bytes, header included (min 16): 512, 4k, 64k.
    #[arg(long, default_value = "512", value_parser = netlab_core::parse_size)]
    size: usize,
}

/// Flags every command shares.
#[derive(Args, Clone)]
struct LoadFlags {
    /// Measured duration: 10s, 2m, 500ms [default: 10s; compare and sweep 2s].
    #[arg(short = 'd', long, value_parser = parse_duration, allow_hyphen_values = true)]
    duration: Option<Duration>,

    /// Warmup before the measured window [default: 1s; compare and sweep 500ms].
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    warmup: Option<Duration>,

    /// Client threads (each runs one epoll loop over its share of the connections).
    #[arg(short = 't', long, default_value = "1", value_parser = parse_count)]
    threads: u64,

    /// Messages in flight per connection (closed loop).
    #[arg(long, default_value = "1", value_parser = parse_count)]
    pipeline: u64,

    /// Open loop: messages per second in total (10k, 1.5M); latency from intended send time.
    #[arg(short = 'R', long, value_parser = parse_number)]
    rate: Option<f64>,

    /// TCP_NODELAY: `on` disables Nagle's algorithm (default), `off` leaves it on.
    #[arg(long, default_value = "on", value_name = "on|off", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    nodelay: bool,

    /// New connections per second while connecting (for thousands of connections).
    #[arg(long, value_parser = parse_number)]
    connect_rate: Option<f64>,

    /// A connection owing an echo with nothing back for this long has timed out.
    #[arg(long, default_value = "2s", value_parser = parse_duration, allow_hyphen_values = true)]
    timeout: Duration,

    /// Count the server's syscalls per message by name (perf tracepoints; needs the pid). The
    /// counting itself costs the server CPU (about 2 us per message on the machine this was
    /// written on): take CPU figures from a run without it.
    #[arg(long)]
    syscalls: bool,

    /// Connection churn: each connection connects, echoes one message and closes, again and
    /// again; msg/s is then connections per second and latency runs from connect to close.
    #[arg(long)]
    churn: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Flags for running the echo servers ourselves.
#[derive(Args, Clone)]
struct ServerFlags {
    /// Models to run, comma-separated (blocking,select,poll,epoll-lt,epoll-et,mio,uring,tokio,c,reuseport,fork) [default: all].
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,

    /// Directory holding the echo-* binaries [default: next to loadgen, built from the workspace].
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,

    /// Do not run cargo build for the servers, even from the workspace.
    #[arg(long)]
    no_build: bool,

    /// Output folder, new or empty [default: compare ./netlab-report-YYYYmmdd-HHMMSS, sweep
    /// ./netlab-sweep-YYYYmmdd-HHMMSS; -2, -3, ... appended if taken].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Run every model N times, interleaved (A B C, B C A, ...); more than one reports the
    /// median and the spread (min..max of the rounds) of msg/s, p99 and server CPU per message
    /// [default: compare 3, sweep 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: Option<u64>,

    /// Do not pin client and server to different cores.
    #[arg(long)]
    no_pin: bool,

    /// Skip the forking server when it would need more processes than this.
    #[arg(long, default_value_t = 2000)]
    max_processes: usize,

    /// Serve on Unix-domain sockets (in the temp dir) instead of TCP on 127.0.0.1 (the same as
    /// --transport unix).
    #[arg(long, conflicts_with = "transport")]
    unix: bool,

    /// tcp, unix, or tcp,unix: each model over TCP loopback and over a Unix socket side by side
    /// in one run, with the unix/tcp ratios [default: tcp].
    #[arg(long, value_name = "LIST", value_parser = transport_list)]
    transport: Option<Transports>,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct CompareArgs {
    #[command(flatten)]
    shape: Shape,
    #[command(flatten)]
    servers: ServerFlags,
    #[command(flatten)]
    load: LoadFlags,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct SweepArgs {
    /// Idle connection counts to sweep: 0,100,1000,10000 (the default dimension).
    #[arg(long, value_parser = count_list, allow_hyphen_values = true)]
    idle: Option<List>,

    /// Active connection counts to sweep: 1,10,100,1000.
    #[arg(short = 'c', long, value_parser = count_list, allow_hyphen_values = true)]
    connections: Option<List>,

    /// Message sizes to sweep: 64,512,4k,64k.
    #[arg(long, value_parser = size_list, allow_hyphen_values = true)]
    size: Option<List>,

    #[command(flatten)]
    servers: ServerFlags,
    #[command(flatten)]
    load: LoadFlags,
}

/// A comma-separated list, kept as one value (clap would otherwise take `Vec` as repeats).
#[derive(Clone)]
struct List(Vec<u64>);

/// `--transport tcp,unix`, kept as one value.
#[derive(Clone)]
struct Transports(Vec<Transport>);

fn transport_list(text: &str) -> Result<Transports, String> {
    Transport::parse_list(text).map(Transports)
}

fn count_list(text: &str) -> Result<List, String> {
    parse_count_list(text).map(List)
}

fn size_list(text: &str) -> Result<List, String> {
    parse_size_list(text).map(List)
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct HttpArgs {
    /// http://HOST:PORT/path
    url: String,

    /// Connections.
    #[arg(short = 'c', long, default_value = "50", value_parser = parse_count)]
    connections: u64,

    /// Pid of the server, for its cost per request and per GiB.
    #[arg(long, value_name = "PID", value_parser = parse_pid)]
    server_pid: Option<i32>,

    #[command(flatten)]
    load: LoadFlags,
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 1 {
        eprintln!("loadgen: error: give a target (HOST:PORT or unix:PATH) or a command (compare, sweep, http); see loadgen --help");
        std::process::exit(2);
    }
    // Errors point to the help of the command they are about: `loadgen compare --help`.
    let help = match args[1].to_str() {
        Some(name @ ("compare" | "sweep" | "http")) => format!("loadgen {name} --help"),
        _ => "loadgen --help".to_string(),
    };
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            let line = commands::usage_error_line(&e.render().to_string());
            eprintln!("loadgen: error: {line}; see {help}");
            std::process::exit(2);
        }
    };
    netlab_loadgen::raise_fd_limit();
    match run(cli) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => match e.downcast_ref::<BadArgument>() {
            Some(bad) => {
                eprintln!("loadgen: error: {bad}; see {help}");
                std::process::exit(2);
            }
            None => {
                eprintln!("loadgen: error: {e:#}");
                std::process::exit(1);
            }
        },
    }
}

/// Returns whether everything went without error.
fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        None => {
            let target =
                Target::parse(cli.target.as_deref().unwrap_or_default()).map_err(BadArgument)?;
            let workload = workload(
                target,
                &cli.shape,
                &cli.load,
                Duration::from_secs(10),
                Duration::from_secs(1),
            );
            commands::run_one(OneRun {
                label: workload.target.to_string(),
                workload,
                server_pid: cli.server_pid,
                syscalls: cli.load.syscalls,
                format: cli.load.format,
            })
        }
        Some(Command::Compare(args)) => {
            let workload = workload(
                Target::Tcp("127.0.0.1:0".parse().unwrap()),
                &args.shape,
                &args.load,
                Duration::from_secs(2),
                Duration::from_millis(500),
            );
            // Refused before any server starts (`-c 0`, `--size 1`).
            workload.check()?;
            let plan = plan(workload, &args.servers, &args.load, 3)?;
            let outcome = compare::compare(&plan, args.servers.out.as_deref())?;
            commands::print_outcome(&outcome, args.load.format)
        }
        Some(Command::Sweep(args)) => {
            let choice = SweepChoice::from_lists(
                args.idle.clone().map(|l| l.0),
                args.connections.clone().map(|l| l.0),
                args.size.clone().map(|l| l.0),
            )?;
            let (dimension, values) = (choice.dimension, choice.values.clone());
            let shape = Shape {
                connections: choice.connections,
                idle: choice.idle,
                size: choice.size as usize,
            };
            let mut workload = workload(
                Target::Tcp("127.0.0.1:0".parse().unwrap()),
                &shape,
                &args.load,
                Duration::from_secs(2),
                Duration::from_millis(500),
            );
            if workload.connect_rate.is_none() && dimension != Dimension::Size {
                // Thousands of handshakes at once overflow the SYN and accept queues; 20k/s
                // keeps the 10,000-connection step within about half a second.
                workload.connect_rate = Some(20_000.0);
            }
            workload.check()?;
            let plan = plan(workload, &args.servers, &args.load, 1)?;
            let outcome = compare::sweep(&plan, dimension, &values, args.servers.out.as_deref())?;
            commands::print_outcome(&outcome, args.load.format)
        }
        Some(Command::Http(args)) => {
            let url = HttpUrl::parse(&args.url).map_err(BadArgument)?;
            let shape = Shape {
                connections: args.connections,
                idle: 0,
                size: 0,
            };
            let mut workload = workload(
                url.target,
                &shape,
                &args.load,
                Duration::from_secs(10),
                Duration::from_secs(1),
            );
            workload.protocol = Protocol::Http {
                host: url.host,
                path: url.path,
            };
            commands::run_one(OneRun {
                label: args.url.clone(),
                workload,
                server_pid: args.server_pid,
                syscalls: args.load.syscalls,
                format: args.load.format,
            })
        }
    }
}

fn workload(
    target: Target,
    shape: &Shape,
    load: &LoadFlags,
    duration: Duration,
    warmup: Duration,
) -> Workload {
    use std::io::IsTerminal;
    Workload {
        target,
        protocol: Protocol::Echo,
        connections: shape.connections as usize,
        idle: shape.idle as usize,
        threads: load.threads as usize,
        size: shape.size,
        pipeline: load.pipeline as usize,
        rate: load.rate,
        warmup: load.warmup.unwrap_or(warmup),
        duration: load.duration.unwrap_or(duration),
        timeout: load.timeout,
        nodelay: load.nodelay,
        connect_rate: load.connect_rate,
        progress: std::io::stderr().is_terminal(),
        churn: load.churn,
    }
}

fn plan(
    workload: Workload,
    flags: &ServerFlags,
    load: &LoadFlags,
    default_rounds: usize,
) -> anyhow::Result<Plan> {
    Ok(Plan {
        workload,
        models: servers::select_models(&flags.models)?,
        bin_dir: flags.bin_dir.clone(),
        build: !flags.no_build,
        syscalls: load.syscalls,
        pin: !flags.no_pin,
        max_processes: flags.max_processes,
        transports: match (&flags.transport, flags.unix) {
            (Some(list), _) => list.0.clone(),
            (None, true) => vec![Transport::Unix],
            (None, false) => vec![Transport::Tcp],
        },
        rounds: flags.rounds.map_or(default_rounds, |n| n as usize),
    })
}
