//! `compare`: the same workload against every echo server model in turn (the machinery
//! [`crate::sweep`] shares: placement, one model's run, rounds).
//!
//! Each run: start the server on 127.0.0.1:0 (or a Unix socket; `--transport tcp,unix` runs
//! each model on both, side by side, with the ratios) pinned to core 1 (the client's threads
//! are on core 0; a model that is about several cores, reuseport, is not pinned and says so),
//! read its listening line, warm up, measure, SIGTERM it, check it said `stopped` and
//! exited 0. With `--rounds N`, every model runs N times, interleaved, and its row holds the
//! medians and spreads ([`crate::rounds`]). The results go to a folder named on stdout:
//! results.json, results.csv, SVG charts and index.html ([`crate::page`]), the page of it all.

use std::path::{Path, PathBuf};

use crate::charts::{self, Bar};
use crate::environment;
pub use crate::folder::timestamp;
use crate::folder::{output_dir, write_results};
use crate::page::{self, Page};
use crate::render;
use crate::report::{self, Environment, MeasureOptions, RunReport, Status};
use crate::rounds::{self, Figure};
use crate::servers::{self, Listen, ModelSpec, RunningServer};
pub use crate::sweep::{sweep, Dimension};
use crate::Workload;

/// How to run a set of models.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workload: Workload,
    pub models: Vec<ModelSpec>,
    /// Where the server binaries are; `None`: next to this executable (built from the
    /// workspace when possible).
    pub bin_dir: Option<PathBuf>,
    /// Run `cargo build` for the servers when run from the workspace.
    pub build: bool,
    pub syscalls: bool,
    /// Pin client and server to different cores.
    pub pin: bool,
    /// The forking server is skipped above this many connections (one process each).
    pub max_processes: usize,
    /// TCP loopback, Unix-domain sockets, or both side by side (each model once per transport).
    pub transports: Vec<Transport>,
    /// Run every model this many times, interleaved; more than one gives medians and spreads.
    pub rounds: usize,
}

/// Where client and server run.
pub(crate) struct Placement {
    pub(crate) client: Option<usize>,
    pub(crate) server: Option<usize>,
    pub(crate) note: Option<String>,
}

pub(crate) fn place(pin: bool) -> Placement {
    let cores = servers::online_cores();
    if !pin {
        return Placement {
            client: None,
            server: None,
            note: Some("not pinned (--no-pin)".into()),
        };
    }
    if cores < 2 {
        return Placement {
            client: None,
            server: None,
            note: Some(
                "1 core: client and server share it, so every figure includes the other's load"
                    .into(),
            ),
        };
    }
    // This thread's affinity is inherited by the engine threads it starts.
    match servers::pin_thread(0, 0) {
        Ok(()) => Placement {
            client: Some(0),
            server: Some(1),
            note: None,
        },
        Err(e) => Placement {
            client: None,
            server: None,
            note: Some(format!("could not pin the client ({e}); not pinned")),
        },
    }
}

/// Runs one model with one workload and returns its row (never fails: problems go in the row).
fn run_model(
    spec: &ModelSpec,
    transport: Transport,
    bin_dir: &Path,
    workload: &Workload,
    env: &Environment,
    placement: &Placement,
    plan: &Plan,
) -> RunReport {
    let bin = bin_dir.join(spec.bin);
    let listen = if transport == Transport::Unix {
        let path = std::env::temp_dir().join(format!(
            "netlab-loadgen-{}-{}.sock",
            std::process::id(),
            spec.name
        ));
        let _ = std::fs::remove_file(&path);
        Listen::Unix(path)
    } else {
        Listen::Tcp
    };
    let syscalls = plan.syscalls;
    if !bin.exists() {
        // A model this checkout does not have (yet): not a failure of the comparison.
        let why = format!("skipped: {} not found in {}", spec.bin, bin_dir.display());
        return RunReport::skipped(spec.name, workload, env, &why);
    }
    let server_core = if spec.one_core {
        placement.server
    } else {
        None
    };
    let mut env = env.clone();
    env.server_core = server_core;
    let env = &env;
    let server = match RunningServer::start(&bin, spec.args, &listen, server_core) {
        Ok(server) => server,
        Err(why) if why.starts_with(servers::NOT_BUILT) => {
            return RunReport::skipped(spec.name, workload, env, &format!("skipped: {why}"));
        }
        Err(why) => return RunReport::unavailable(spec.name, workload, env, &why),
    };
    let mut workload = workload.clone();
    workload.target = server.target.clone();
    let options = MeasureOptions {
        label: spec.name.to_string(),
        server_pid: Some(server.pid),
        syscalls,
        environment: env.clone(),
    };
    let measured = report::measure(&workload, options);
    let stopped = server.stop();
    if let Listen::Unix(path) = &listen {
        let _ = std::fs::remove_file(path);
    }
    let measured_ok = measured.is_ok();
    let mut report = match measured {
        Ok(r) => r,
        Err(e) => {
            let mut r = RunReport::unavailable(spec.name, &workload, env, &format!("{e:#}"));
            r.status = Status::Errors;
            r
        }
    };
    report.server_stopped = stopped.line.clone();
    let mut notes: Vec<String> = report.note.take().into_iter().collect();
    let refused = stopped.count("refused");
    if refused > 0 {
        // select closed the connections it could not watch: closes and resets up to that many
        // are its refusals, not failures. Anything else is still an error.
        let e = &report.errors;
        let other = e.mismatch + e.short_echo + e.timeout + e.connect + e.http + e.client_limit;
        if measured_ok && other == 0 && e.closed + e.reset <= refused {
            report.status = Status::FdLimit;
        }
        notes.push(format!(
            "fd limit (FD_SETSIZE): the server refused {refused} connection(s) whose fd was >= 1024; the figures cover the connections it kept"
        ));
    }
    if !stopped.problems.is_empty() {
        report.status = Status::Errors;
        notes.push(format!("server stop: {}", stopped.problems.join("; ")));
    }
    if let Some(n) = &placement.note {
        notes.push(n.clone());
    }
    if !spec.one_core {
        notes.push(spread_note(&report, placement));
    }
    if !notes.is_empty() {
        report.note = Some(notes.join("; "));
    }
    report
}

/// Where a server that is not pinned ran, and the scaling this machine allows it.
fn spread_note(report: &RunReport, placement: &Placement) -> String {
    let cores = report.environment.cores;
    let loops = report.server.as_ref().map_or(0, |s| s.threads);
    let client = match placement.client {
        Some(core) => format!("the client pinned to core {core}"),
        None => "the client not pinned".to_string(),
    };
    let scaling = if cores <= 2 {
        format!(
            "on {cores} cores the client needs one, so the loops share it and at most one more core: 2 loops cannot scale to 2 cores of their own here, and more than 2 cannot scale at all; what it shows is the cost of the split (threads, listeners), not its gain"
        )
    } else {
        format!(
            "{cores} cores: up to {} loops can have a core of their own beside the client",
            cores - 1
        )
    };
    format!(
        "not pinned: {loops} threads in all (a SO_REUSEPORT loop per core by default) free to run on any of {cores} cores, {client}; {scaling}"
    )
}

/// Every model `plan.rounds` times, interleaved (round k starts at the k-th model), then one
/// row per model: the run itself for a single round, the medians and spreads for several.
pub(crate) fn run_rounds(
    plan: &Plan,
    workload: &Workload,
    bin_dir: &Path,
    env: &Environment,
    placement: &Placement,
    label: &dyn Fn(&ModelSpec) -> String,
) -> Vec<RunReport> {
    // Each model once per transport, side by side: epoll-lt tcp, epoll-lt unix, poll tcp, ...
    let entries: Vec<(ModelSpec, Transport)> = plan
        .models
        .iter()
        .flat_map(|spec| plan.transports.iter().map(|t| (*spec, *t)))
        .collect();
    let label = |spec: &ModelSpec, transport: Transport| {
        if plan.transports.len() > 1 {
            format!("{} {}", label(spec), transport.name())
        } else {
            label(spec)
        }
    };
    let n = entries.len();
    let total = plan.rounds.max(1);
    let mut runs: Vec<Vec<RunReport>> = vec![Vec::new(); n];
    for round in 0..total {
        for i in rounds::order(n, round) {
            let (spec, transport) = &entries[i];
            let (spec, transport) = (spec, *transport);
            // A model that could not run (or was skipped) once is not tried again.
            if runs[i].iter().any(|r| !r.status.measured()) {
                continue;
            }
            let report = match too_many_processes(spec, workload, env, plan) {
                Some(skipped) => skipped,
                None => {
                    let name = label(spec, transport);
                    if total > 1 {
                        eprintln!("loadgen: {name} (round {}/{total}) ...", round + 1);
                    } else {
                        eprintln!("loadgen: {name} ...");
                    }
                    run_model(spec, transport, bin_dir, workload, env, placement, plan)
                }
            };
            runs[i].push(report);
        }
    }
    let load = environment::load_average();
    runs.into_iter()
        .zip(&entries)
        .map(|(runs, (spec, transport))| {
            let mut row = one_row(runs, &load);
            row.model = label(spec, *transport);
            row
        })
        .collect()
}

/// A model's rounds as its row: the run itself for one round, the medians and spreads
/// ([`rounds::combine`]) for several. The row keeps its median round's client figures, so a
/// client that saturated its core in any round is said here, with how many.
fn one_row(mut runs: Vec<RunReport>, load: &str) -> RunReport {
    let count = runs.len();
    if count == 1 {
        return runs.remove(0);
    }
    let saturated = runs.iter().filter(|r| r.client.warning.is_some()).count();
    let mut row = rounds::combine(runs, load.to_string());
    if saturated > 0 && row.status.measured() {
        row.client.warning = Some(format!(
            "client-bound in {saturated} of {count} rounds: a loadgen thread used 90% or more of its core, so msg/s there measures the client as much as the server; compare server CPU per message instead, or give the client more threads (-t) and cores"
        ));
    }
    row
}

/// How the servers listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP on 127.0.0.1, a free port.
    Tcp,
    /// A Unix-domain stream socket in the temp dir.
    Unix,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
        }
    }

    /// `tcp`, `unix` or `tcp,unix`.
    pub fn parse_list(text: &str) -> Result<Vec<Transport>, String> {
        let mut list = Vec::new();
        for part in text.split(',').map(str::trim) {
            let t = match part {
                "tcp" => Transport::Tcp,
                "unix" => Transport::Unix,
                other => return Err(format!("unknown transport '{other}' (tcp, unix)")),
            };
            if !list.contains(&t) {
                list.push(t);
            }
        }
        Ok(list)
    }
}

/// With both transports: per model, the Unix socket's figures over TCP's. The rows are found
/// by their transport, not their position, so `--transport unix,tcp` divides the same way;
/// with rounds, the figures divided are the rows' medians.
fn transport_ratios(reports: &[RunReport], models: &[ModelSpec], rounds: usize) -> String {
    let mut rows = Vec::new();
    let find = |spec: &ModelSpec, t: Transport| {
        let name = format!("{} {}", spec.name, t.name());
        reports.iter().find(|r| r.model == name)
    };
    for spec in models {
        let (Some(tcp), Some(unix)) = (find(spec, Transport::Tcp), find(spec, Transport::Unix))
        else {
            continue;
        };
        if !tcp.status.measured() || !unix.status.measured() {
            continue;
        }
        let cpu = |r: &RunReport| r.server.as_ref().map(|s| s.cpu_us_per_msg);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}x", b / a),
            _ => "-".into(),
        };
        let fmt_cpu = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
        rows.push(vec![
            spec.name.to_string(),
            crate::units::human(tcp.msgs_per_s),
            crate::units::human(unix.msgs_per_s),
            ratio(Some(tcp.msgs_per_s), Some(unix.msgs_per_s)),
            render::fmt_us(tcp.latency.p99_us),
            render::fmt_us(unix.latency.p99_us),
            ratio(Some(tcp.latency.p99_us), Some(unix.latency.p99_us)),
            fmt_cpu(cpu(tcp)),
            fmt_cpu(cpu(unix)),
            ratio(cpu(tcp), cpu(unix)),
        ]);
    }
    let header = [
        "model",
        "tcp msg/s",
        "unix msg/s",
        "unix/tcp",
        "tcp p99us",
        "unix p99us",
        "unix/tcp",
        "tcp srv us/msg",
        "unix srv us/msg",
        "unix/tcp",
    ];
    let of = if rounds > 1 {
        format!(", medians of {rounds} rounds")
    } else {
        String::new()
    };
    format!(
        "\nTCP loopback against a Unix socket, same server, same run{of} (ratio = unix / tcp):\n{}",
        render::text_table(&header, &rows)
    )
}

/// The forking server makes a process per connection: above `--max-processes` its row is
/// skipped rather than run.
pub(crate) fn too_many_processes(
    spec: &ModelSpec,
    workload: &Workload,
    env: &Environment,
    plan: &Plan,
) -> Option<RunReport> {
    let total = workload.connections + workload.idle;
    (spec.name == "fork" && total > plan.max_processes).then(|| {
        RunReport::skipped(
            spec.name,
            workload,
            env,
            &format!(
                "skipped: would fork {total} processes (--max-processes {})",
                plan.max_processes
            ),
        )
    })
}

/// Results of a compare or sweep, and where they were written.
pub struct Outcome {
    pub reports: Vec<RunReport>,
    pub out_dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// For a sweep: the figures side by side, one row per model, one column per value.
    pub summary: Option<String>,
    /// The workload in words (for a sweep: with the swept values).
    pub workload: String,
}

impl Outcome {
    /// Failed when any run had errors, a server could not be started, or a server stopped badly.
    pub fn failed(&self) -> bool {
        self.reports.iter().any(|r| r.failed())
    }
}

/// `compare`: every model with the same workload.
pub fn compare(plan: &Plan, out: Option<&Path>) -> anyhow::Result<Outcome> {
    // Bad input is refused before anything is built, started or written.
    plan.workload.check()?;
    let out_dir = output_dir(out, "netlab-report")?;
    let bin_dir = servers::locate_servers(plan.bin_dir.as_deref(), plan.build)?;
    let placement = place(plan.pin);
    let mut env = Environment::detect(&plan.workload);
    env.client_core = placement.client;
    env.server_core = placement.server;
    let mut reports = run_rounds(plan, &plan.workload, &bin_dir, &env, &placement, &|spec| {
        spec.name.to_string()
    });
    rounds::mark_overlaps(&mut reports);
    let mut files = write_results(&out_dir, &reports)?;
    let measured: Vec<&RunReport> = reports.iter().filter(|r| r.status.measured()).collect();
    let subtitle = format!(
        "{}; {}; {}",
        plan.workload.describe(),
        env.kernel,
        env.cpu_model
    );
    let range = |r: &RunReport, figure: Figure| {
        let s = r.rounds.as_ref()?.spread(figure)?;
        Some((s.min, s.max))
    };
    let bar = |r: &RunReport, segments: Vec<f64>, figure: Figure| Bar {
        label: r.model.clone(),
        segments,
        range: range(r, figure),
    };
    let plain = |f: &dyn Fn(&RunReport) -> f64, figure: Figure| -> Vec<Bar> {
        measured
            .iter()
            .map(|r| bar(r, vec![f(r)], figure))
            .collect()
    };
    // A row without server figures has no bar here (not a bar of zero).
    let cpu: Vec<Bar> = measured
        .iter()
        .filter_map(|r| {
            let s = r.server.as_ref()?;
            let segments = if s.cpu_user_us_per_msg.is_finite() {
                vec![s.cpu_user_us_per_msg, s.cpu_system_us_per_msg]
            } else {
                // No clock tick in the window: the split is unknown, the total is not, and
                // it is drawn in a colour of its own rather than passed off as system time.
                vec![0.0, 0.0, s.cpu_us_per_msg]
            };
            Some(bar(r, segments, Figure::ServerCpuUsPerMsg))
        })
        .collect();
    let cpu_segments: &[&str] = if cpu.iter().any(|b| b.segments.len() > 2) {
        &["user", "system", "split n/a"]
    } else {
        &["user", "system"]
    };
    // The spread goes in the title: the subtitle is already as long as a chart is wide.
    let of_rounds = if plan.rounds > 1 {
        format!(", median and min..max of {} rounds", plan.rounds)
    } else {
        String::new()
    };
    for (name, title, y, names, data) in [
        (
            "throughput.svg",
            format!("Throughput (messages/s){of_rounds}"),
            "messages/s",
            &["msg/s"][..],
            plain(&|r| r.msgs_per_s, Figure::MsgsPerS),
        ),
        (
            "p99.svg",
            format!("p99 latency (us){of_rounds}"),
            "p99 latency (us)",
            &["p99"][..],
            plain(&|r| r.latency.p99_us, Figure::P99Us),
        ),
        (
            "cpu-per-msg.svg",
            format!("Server CPU per message (us, user + system){of_rounds}"),
            "server CPU us/message",
            cpu_segments,
            cpu,
        ),
    ] {
        let path = out_dir.join(name);
        charts::bars(&path, &title, &subtitle, y, names, &data)?;
        files.push(path);
    }
    let workload = plan.workload.describe();
    let summary =
        (plan.transports.len() > 1).then(|| transport_ratios(&reports, &plan.models, plan.rounds));
    let charts = files[2..].to_vec();
    files.push(page::write(
        &out_dir,
        &Page {
            title: "netlab compare",
            workload: &format!("{workload} over {}", transport(&reports)),
            charts: &charts,
            preformatted: summary.as_deref(),
        },
        &reports,
    )?);
    Ok(Outcome {
        reports,
        out_dir,
        files,
        summary,
        workload,
    })
}

/// `TCP on 127.0.0.1`, `Unix-domain stream sockets` or both, from the rows' targets.
pub fn transport(reports: &[RunReport]) -> &'static str {
    let measured = || reports.iter().filter(|r| !r.target.is_empty());
    let unix = measured().any(|r| r.target.starts_with("unix:"));
    let tcp = measured().any(|r| !r.target.starts_with("unix:"));
    match (tcp, unix) {
        (true, true) => "TCP on 127.0.0.1 and Unix-domain stream sockets",
        (false, true) => "Unix-domain stream sockets",
        _ => "TCP on 127.0.0.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounds_of_c() -> Vec<RunReport> {
        let text = include_str!("../tests/data/compare-two-rounds.json");
        let rows: Vec<RunReport> = serde_json::from_str(text).unwrap();
        let mut c = rows.into_iter().find(|r| r.model == "c").unwrap();
        c.rounds = None;
        c.client.warning = None;
        let (mut slow, mut fast) = (c.clone(), c);
        slow.msgs_per_s = 80_000.0;
        fast.msgs_per_s = 90_000.0;
        vec![slow, fast.clone(), fast]
    }

    #[test]
    fn a_client_bound_round_is_said_even_when_the_median_round_was_not() {
        let mut runs = rounds_of_c();
        let row = one_row(runs.clone(), "1 1 1");
        assert!(row.client.warning.is_none(), "no round saturated");
        // Only the slow round, not the one the row keeps (nearest the median 90k).
        runs[0].client.warning = Some("client-bound".into());
        let row = one_row(runs, "1 1 1");
        assert_eq!(row.msgs_per_s, 90_000.0);
        let warning = row.client.warning.expect("a warning");
        assert!(
            warning.starts_with("client-bound in 1 of 3 rounds"),
            "{warning}"
        );
    }
}
