//! `compare` and `sweep`: the same workload against every echo server model in turn.
//!
//! Each run: start the server on 127.0.0.1:0 pinned to core 1 (the client's threads are on
//! core 0), read its listening line, warm up, measure, SIGTERM it, check it said `stopped` and
//! exited 0. With `--rounds N`, every model runs N times, interleaved, and its row holds the
//! medians and spreads ([`crate::rounds`]). The results go to a folder named on stdout:
//! results.json, results.csv, SVG charts and index.html ([`crate::page`]), the page of it all.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::charts::{self, Bar, Series};
use crate::environment;
use crate::page::{self, Page};
use crate::report::{self, Environment, MeasureOptions, RunReport, Status};
use crate::rounds::{self, Figure};
use crate::servers::{self, Listen, ModelSpec, RunningServer};
use crate::{BadArgument, Workload};

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
    /// Serve on Unix-domain sockets instead of TCP loopback.
    pub unix: bool,
    /// Run every model this many times, interleaved; more than one gives medians and spreads.
    pub rounds: usize,
}

/// Where client and server run.
struct Placement {
    client: Option<usize>,
    server: Option<usize>,
    note: Option<String>,
}

fn place(pin: bool) -> Placement {
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
    bin_dir: &Path,
    workload: &Workload,
    env: &Environment,
    placement: &Placement,
    plan: &Plan,
) -> RunReport {
    let bin = bin_dir.join(spec.bin);
    let listen = if plan.unix {
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
fn run_rounds(
    plan: &Plan,
    workload: &Workload,
    bin_dir: &Path,
    env: &Environment,
    placement: &Placement,
    label: &dyn Fn(&ModelSpec) -> String,
) -> Vec<RunReport> {
    let n = plan.models.len();
    let total = plan.rounds.max(1);
    let mut runs: Vec<Vec<RunReport>> = vec![Vec::new(); n];
    for round in 0..total {
        for i in rounds::order(n, round) {
            let spec = &plan.models[i];
            // A model that could not run (or was skipped) once is not tried again.
            if runs[i].iter().any(|r| !r.status.measured()) {
                continue;
            }
            let report = match too_many_processes(spec, workload, env, plan) {
                Some(skipped) => skipped,
                None => {
                    if total > 1 {
                        eprintln!("loadgen: {} (round {}/{total}) ...", label(spec), round + 1);
                    } else {
                        eprintln!("loadgen: {} ...", label(spec));
                    }
                    run_model(spec, bin_dir, workload, env, placement, plan)
                }
            };
            runs[i].push(report);
        }
    }
    let load = environment::load_average();
    runs.into_iter()
        .zip(&plan.models)
        .map(|(mut runs, spec)| {
            let mut row = if total == 1 || runs.len() == 1 {
                runs.remove(0)
            } else {
                rounds::combine(runs, load.clone())
            };
            row.model = label(spec);
            row
        })
        .collect()
}

/// The forking server makes a process per connection: above `--max-processes` its row is
/// skipped rather than run.
fn too_many_processes(
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
    let cpu: Vec<Bar> = measured
        .iter()
        .map(|r| {
            let segments = match &r.server {
                Some(s) if s.cpu_user_us_per_msg.is_finite() => {
                    vec![s.cpu_user_us_per_msg, s.cpu_system_us_per_msg]
                }
                // No clock tick in the window: the split is unknown, the total is not.
                Some(s) => vec![0.0, s.cpu_us_per_msg],
                None => vec![0.0, 0.0],
            };
            bar(r, segments, Figure::ServerCpuUsPerMsg)
        })
        .collect();
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
            &["user", "system"][..],
            cpu,
        ),
    ] {
        let path = out_dir.join(name);
        charts::bars(&path, &title, &subtitle, y, names, &data)?;
        files.push(path);
    }
    let workload = plan.workload.describe();
    let charts = files[2..].to_vec();
    files.push(page::write(
        &out_dir,
        &Page {
            title: "netlab compare",
            workload: &format!("{workload} over {}", transport(&reports)),
            charts: &charts,
            preformatted: None,
        },
        &reports,
    )?);
    Ok(Outcome {
        reports,
        out_dir,
        files,
        summary: None,
        workload,
    })
}

/// `TCP on 127.0.0.1` or `Unix-domain stream sockets`, from the rows' targets.
pub fn transport(reports: &[RunReport]) -> &'static str {
    match reports.iter().find(|r| !r.target.is_empty()) {
        Some(r) if r.target.starts_with("unix:") => "Unix-domain stream sockets",
        _ => "TCP on 127.0.0.1",
    }
}

/// What `sweep` varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Idle,
    Connections,
    Size,
}

impl Dimension {
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Idle => "idle",
            Dimension::Connections => "connections",
            Dimension::Size => "size",
        }
    }

    fn apply(self, workload: &mut Workload, value: u64) {
        match self {
            Dimension::Idle => workload.idle = value as usize,
            Dimension::Connections => workload.connections = value as usize,
            Dimension::Size => workload.size = value as usize,
        }
    }
}

/// `sweep`: every model at every value of one dimension.
pub fn sweep(
    plan: &Plan,
    dimension: Dimension,
    values: &[u64],
    out: Option<&Path>,
) -> anyhow::Result<Outcome> {
    // Bad input (at any of the values) is refused before anything is built, started or
    // written.
    for &value in values {
        let mut workload = plan.workload.clone();
        dimension.apply(&mut workload, value);
        workload.check()?;
    }
    let out_dir = output_dir(out, "netlab-sweep")?;
    let bin_dir = servers::locate_servers(plan.bin_dir.as_deref(), plan.build)?;
    let placement = place(plan.pin);
    let mut reports = Vec::new();
    for &value in values {
        let mut workload = plan.workload.clone();
        dimension.apply(&mut workload, value);
        let mut env = Environment::detect(&workload);
        env.client_core = placement.client;
        env.server_core = placement.server;
        let label = |spec: &ModelSpec| format!("{} {}={value}", spec.name, dimension.name());
        let mut rows = run_rounds(plan, &workload, &bin_dir, &env, &placement, &label);
        // Models are told apart at the same value, not across values.
        rounds::mark_overlaps(&mut rows);
        reports.extend(rows);
    }
    let mut files = write_results(&out_dir, &reports)?;
    let series = |f: &dyn Fn(&RunReport) -> Option<f64>, figure: Figure| -> Vec<Series> {
        plan.models
            .iter()
            .enumerate()
            .map(|(k, spec)| {
                let at = |v: usize| {
                    let r = &reports[v * plan.models.len() + k];
                    (r.status == Status::Ok).then_some(r)
                };
                Series {
                    name: spec.name.to_string(),
                    points: (0..values.len()).map(|v| at(v).and_then(f)).collect(),
                    ranges: (0..values.len())
                        .map(|v| {
                            let s = at(v)?.rounds.as_ref()?.spread(figure)?;
                            Some((s.min, s.max))
                        })
                        .collect(),
                }
            })
            .collect()
    };
    let what = dimension.name();
    let subtitle = format!("varying {what}");
    let listed: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    let footer = format!(
        "{}; {what} = {}",
        plan.workload.describe_varying(Some(what)),
        listed.join(", ")
    );
    let chart_footer = if plan.rounds > 1 {
        format!(
            "{footer}; median of {} rounds, whiskers min..max",
            plan.rounds
        )
    } else {
        footer.clone()
    };
    for (file, title, y, f, figure) in [
        (
            "sweep-throughput.svg",
            format!("Throughput, {subtitle}"),
            "messages/s",
            &(|r: &RunReport| Some(r.msgs_per_s)) as &dyn Fn(&RunReport) -> Option<f64>,
            Figure::MsgsPerS,
        ),
        (
            "sweep-cpu-per-msg.svg",
            format!("Server CPU per message, {subtitle}"),
            "server CPU us/message",
            &|r: &RunReport| r.server.as_ref().map(|s| s.cpu_us_per_msg),
            Figure::ServerCpuUsPerMsg,
        ),
        (
            "sweep-p99.svg",
            format!("p99 latency, {subtitle}"),
            "p99 latency (us)",
            &|r: &RunReport| Some(r.latency.p99_us),
            Figure::P99Us,
        ),
    ] {
        let path = out_dir.join(file);
        charts::lines(
            &path,
            &title,
            what,
            y,
            values,
            &series(f, figure),
            &chart_footer,
        )?;
        files.push(path);
    }
    let summary = sweep_summary(&reports, &plan.models, dimension, values);
    let charts = files[2..].to_vec();
    files.push(page::write(
        &out_dir,
        &Page {
            title: &format!("netlab sweep ({what})"),
            workload: &format!("{footer} over {}", transport(&reports)),
            charts: &charts,
            preformatted: Some(&summary),
        },
        &reports,
    )?);
    Ok(Outcome {
        reports,
        out_dir,
        files,
        summary: Some(summary),
        workload: footer,
    })
}

/// Two small matrices: messages/s and server CPU us/message, model by swept value.
fn sweep_summary(
    reports: &[RunReport],
    models: &[ModelSpec],
    dimension: Dimension,
    values: &[u64],
) -> String {
    let mut out = String::new();
    for (title, cell) in [
        (
            "messages/s",
            &(|r: &RunReport| crate::units::human(r.msgs_per_s)) as &dyn Fn(&RunReport) -> String,
        ),
        ("server CPU us/message", &|r: &RunReport| {
            r.server
                .as_ref()
                .map_or("-".into(), |s| format!("{:.2}", s.cpu_us_per_msg))
        }),
    ] {
        out += &format!("\n{title} by {}:\n", dimension.name());
        out += &format!("{:<10}", "model");
        for v in values {
            out += &format!("{:>14}", v);
        }
        out.push('\n');
        for (k, spec) in models.iter().enumerate() {
            out += &format!("{:<10}", spec.name);
            for v in 0..values.len() {
                let r = &reports[v * models.len() + k];
                let text = match r.status {
                    Status::Ok => cell(r),
                    Status::FdLimit => "FD_SETSIZE".into(),
                    Status::Skipped => "skipped".into(),
                    Status::Unavailable => "n/a".into(),
                    Status::Errors => format!("{} err", cell(r)),
                };
                out += &format!("{text:>14}");
            }
            out.push('\n');
        }
    }
    out
}

/// `results.json` and `results.csv` in `dir`.
fn write_results(dir: &Path, reports: &[RunReport]) -> anyhow::Result<Vec<PathBuf>> {
    let json = dir.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(reports)? + "\n")
        .with_context(|| format!("cannot write {}", json.display()))?;
    let csv = dir.join("results.csv");
    std::fs::write(&csv, report::render(reports, report::Format::Csv)?)
        .with_context(|| format!("cannot write {}", csv.display()))?;
    Ok(vec![json, csv])
}

/// The output folder, made before the first run: `out` if it is new or empty (a folder that
/// holds anything is refused, not overwritten), or a new `./PREFIX-YYYYmmdd-HHMMSS/` (UTC).
fn output_dir(out: Option<&Path>, prefix: &str) -> anyhow::Result<PathBuf> {
    match out {
        Some(dir) => {
            if let Ok(mut entries) = std::fs::read_dir(dir) {
                if entries.next().is_some() {
                    return Err(BadArgument(format!(
                        "--out {}: that folder is not empty; give a new or empty one (nothing was written)",
                        dir.display()
                    ))
                    .into());
                }
            }
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create output folder {}", dir.display()))?;
            Ok(dir.to_path_buf())
        }
        None => new_dir(Path::new("."), &format!("{prefix}-{}", timestamp())),
    }
}

/// Makes `base/name`, or `base/name-2`, `-3`, ... if it exists: `create_dir` fails when the
/// folder exists, so two runs started in the same second never share one.
fn new_dir(base: &Path, name: &str) -> anyhow::Result<PathBuf> {
    for n in 1..1000 {
        let dir = if n == 1 {
            base.join(name)
        } else {
            base.join(format!("{name}-{n}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir.strip_prefix(".").map(Path::to_path_buf).unwrap_or(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create output folder {}", dir.display()))
            }
        }
    }
    anyhow::bail!(
        "cannot find a free output folder name {name}-N in {}",
        base.display()
    )
}

/// `YYYYmmdd-HHMMSS` in UTC.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(timestamp().len(), 15);
    }

    #[test]
    fn two_runs_in_the_same_second_get_two_folders() {
        let base = tempfile::tempdir().unwrap();
        let a = new_dir(base.path(), "netlab-report-20260101-000000").unwrap();
        let b = new_dir(base.path(), "netlab-report-20260101-000000").unwrap();
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
        assert!(b.to_string_lossy().ends_with("-000000-2"));
    }

    #[test]
    fn a_folder_with_files_is_not_overwritten() {
        let base = tempfile::tempdir().unwrap();
        assert!(output_dir(Some(base.path()), "x").is_ok(), "empty is fine");
        std::fs::write(base.path().join("results.json"), "[]").unwrap();
        let e = output_dir(Some(base.path()), "x").unwrap_err();
        assert!(e.downcast_ref::<BadArgument>().is_some(), "{e}");
        assert_eq!(
            std::fs::read_to_string(base.path().join("results.json")).unwrap(),
            "[]"
        );
    }
}
