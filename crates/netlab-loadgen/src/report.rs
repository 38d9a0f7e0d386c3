//! One run's result ([`RunReport`]), how it is measured ([`measure`]) and printed (table, JSON,
//! CSV), with the machine it ran on ([`Environment`]) recorded in every result.

use std::time::Instant;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::cost::{self, Sample, ServerCost};
use crate::engine::{self, ClientCpu, ErrorCounts, Window, Workload};
use crate::syscalls::{PerfCounter, SyscallReport};
use crate::units::human;

/// Where a result was measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Environment {
    /// `uname -srm`.
    pub kernel: String,
    pub cpu_model: String,
    /// Online CPUs of the machine (not of the client's affinity mask).
    pub cores: usize,
    pub netlab_version: String,
    /// Core the client threads were pinned to, if any.
    pub client_core: Option<usize>,
    /// Core the server was pinned to, if any.
    pub server_core: Option<usize>,
    /// The workload in words.
    pub workload: String,
    /// /proc/loadavg (1, 5, 15 min) when the run started: other work on the machine shares
    /// its cores and makes every figure noisier.
    pub load_average: String,
}

impl Environment {
    pub fn detect(workload: &Workload) -> Environment {
        let kernel = nix::sys::utsname::uname()
            .map(|u| {
                format!(
                    "{} {} {}",
                    u.sysname().to_string_lossy(),
                    u.release().to_string_lossy(),
                    u.machine().to_string_lossy()
                )
            })
            .unwrap_or_else(|_| "unknown".into());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = crate::servers::online_cores();
        Environment {
            kernel,
            cpu_model,
            cores,
            netlab_version: env!("CARGO_PKG_VERSION").to_string(),
            client_core: None,
            server_core: None,
            workload: workload.describe(),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
        }
    }

    /// A warning when the machine was busy with other work as the run started.
    pub fn busy_warning(&self) -> Option<String> {
        let one: f64 = self.load_average.split_whitespace().next()?.parse().ok()?;
        (one > self.cores as f64 * 0.75).then(|| {
            format!(
                "machine busy: load average {} on {} cores when the run started; other \
                 processes shared the cores, so throughput and latency are noisy (CPU per \
                 message much less so)",
                self.load_average, self.cores
            )
        })
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    pub count: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Percentiles {
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1e3,
            count: h.len(),
        }
    }
}

/// The client's own cost, and whether it was the bottleneck.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientReport {
    pub threads: usize,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    pub cpu_us_per_msg: f64,
    /// CPU share of the busiest engine thread over the window (1.0 = a whole core).
    pub busiest_thread: f64,
    /// `client`, `server`, `both`, `neither` (latency-bound: both waited) or `unknown` (no
    /// server figures to judge by).
    pub bound: String,
    pub warning: Option<String>,
}

/// One run against one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The server model (`epoll-lt`) or the target when unknown.
    pub model: String,
    pub target: String,
    /// `ok`, `errors`, `unavailable`, `skipped` or `fd limit (FD_SETSIZE)`.
    pub status: String,
    pub note: Option<String>,
    pub environment: Environment,
    pub workload: WorkloadRecord,
    pub window_s: f64,
    pub messages: u64,
    pub msgs_per_s: f64,
    /// Payload MB/s (10^6 bytes) in one direction.
    pub mb_per_s: f64,
    pub latency: Percentiles,
    /// Open loop: latency from the actual send time (coordinated omission not corrected).
    pub latency_uncorrected: Option<Percentiles>,
    pub connect: Percentiles,
    pub connected: usize,
    pub errors: ErrorCounts,
    pub error_examples: Vec<String>,
    pub client: ClientReport,
    pub server: Option<ServerCost>,
    /// The server's own summary line when loadgen stopped it.
    pub server_stopped: Option<String>,
    pub syscalls: SyscallReport,
}

/// The workload as plain numbers (seconds, not `Duration`), for JSON and CSV.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkloadRecord {
    pub protocol: String,
    pub connections: usize,
    pub idle: usize,
    pub threads: usize,
    pub size: usize,
    pub pipeline: usize,
    pub rate: Option<f64>,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub timeout_s: f64,
    pub nodelay: bool,
    pub connect_rate: Option<f64>,
}

impl WorkloadRecord {
    pub fn of(w: &Workload) -> WorkloadRecord {
        WorkloadRecord {
            protocol: match &w.protocol {
                engine::Protocol::Echo => "echo".into(),
                engine::Protocol::Http { path, .. } => format!("http GET {path}"),
            },
            connections: w.connections,
            idle: w.idle,
            threads: w.threads,
            size: w.size,
            pipeline: w.pipeline,
            rate: w.rate,
            warmup_s: w.warmup.as_secs_f64(),
            duration_s: w.duration.as_secs_f64(),
            timeout_s: w.timeout.as_secs_f64(),
            nodelay: w.nodelay,
            connect_rate: w.connect_rate,
        }
    }
}

impl RunReport {
    /// A row for a server that could not be measured.
    pub fn unavailable(
        model: &str,
        workload: &Workload,
        env: &Environment,
        why: &str,
    ) -> RunReport {
        RunReport {
            model: model.into(),
            target: String::new(),
            status: "unavailable".into(),
            note: Some(why.into()),
            environment: env.clone(),
            workload: WorkloadRecord::of(workload),
            window_s: 0.0,
            messages: 0,
            msgs_per_s: 0.0,
            mb_per_s: 0.0,
            latency: Percentiles::default(),
            latency_uncorrected: None,
            connect: Percentiles::default(),
            connected: 0,
            errors: ErrorCounts::default(),
            error_examples: Vec::new(),
            client: ClientReport::default(),
            server: None,
            server_stopped: None,
            syscalls: SyscallReport::absent("not measured"),
        }
    }

    /// A row for a model deliberately not run (`skipped: why`); not a failure.
    pub fn skipped(model: &str, workload: &Workload, env: &Environment, why: &str) -> RunReport {
        RunReport {
            status: "skipped".into(),
            ..RunReport::unavailable(model, workload, env, why)
        }
    }

    /// Whether this run counts as failed (exit status).
    pub fn failed(&self) -> bool {
        self.status == "errors" || self.status == "unavailable"
    }
}

/// What to measure besides the engine's own figures.
pub struct MeasureOptions {
    pub label: String,
    pub server_pid: Option<i32>,
    pub syscalls: bool,
    pub environment: Environment,
}

/// Samples the server at the edges of the window.
struct Sampler {
    pid: Option<i32>,
    want_syscalls: bool,
    baseline: Option<Sample>,
    start: Option<(Instant, Sample)>,
    end: Option<(Instant, Sample)>,
    perf: Option<PerfCounter>,
    perf_problem: Option<String>,
}

impl Window for Sampler {
    fn connected(&mut self) {
        let Some(pid) = self.pid else { return };
        if self.want_syscalls {
            let pids = cost::settled_tree(pid, std::time::Duration::from_secs(2));
            match PerfCounter::start(&pids) {
                Ok(perf) => self.perf = Some(perf),
                Err(why) => self.perf_problem = Some(why),
            }
        }
    }

    fn measure_start(&mut self) {
        let Some(pid) = self.pid else { return };
        if let Some(perf) = self.perf.as_mut() {
            if let Err(why) = perf.enable() {
                self.perf_problem = Some(why);
            }
        }
        self.start = cost::sample(pid).map(|s| (Instant::now(), s));
    }

    fn measure_end(&mut self) {
        let Some(pid) = self.pid else { return };
        if let Some(perf) = self.perf.as_mut() {
            if let Err(why) = perf.disable() {
                self.perf_problem = Some(why);
            }
        }
        self.end = cost::sample(pid).map(|s| (Instant::now(), s));
    }
}

/// Runs the engine on `workload` and assembles the report.
pub fn measure(workload: &Workload, options: MeasureOptions) -> anyhow::Result<RunReport> {
    let mut sampler = Sampler {
        pid: options.server_pid,
        want_syscalls: options.syscalls,
        baseline: options.server_pid.and_then(cost::sample),
        start: None,
        end: None,
        perf: None,
        perf_problem: None,
    };
    if let Some(pid) = options.server_pid {
        if sampler.baseline.is_none() {
            anyhow::bail!("no process {pid} (--server-pid): cannot read /proc/{pid}");
        }
    }
    let result = engine::run(workload, &mut sampler).context("load run failed")?;
    let window_s = workload.duration.as_secs_f64();
    let messages = result.messages;

    let server = match (&sampler.start, &sampler.end, options.server_pid) {
        (Some((t0, s0)), Some((t1, s1)), Some(pid)) => Some(ServerCost::between(
            pid,
            sampler.baseline.as_ref(),
            s0,
            s1,
            &cost::Work {
                window_s: (*t1 - *t0).as_secs_f64(),
                messages,
                bytes: result.bytes,
                connections: result.connected,
            },
        )),
        _ => None,
    };
    let syscalls = if !options.syscalls {
        SyscallReport::absent("not requested (--syscalls)")
    } else if options.server_pid.is_none() {
        SyscallReport::absent("server pid unknown (--server-pid)")
    } else if let Some(why) = sampler.perf_problem.take() {
        SyscallReport::absent(why) // dropping the sampler stops perf
    } else {
        match sampler.perf.take() {
            Some(perf) => perf.finish(messages),
            None => SyscallReport::absent("perf did not start"),
        }
    };

    let client = client_report(workload, &result.client_cpu, messages, server.as_ref());
    let status = if result.errors.total() > 0 {
        "errors"
    } else {
        "ok"
    };
    Ok(RunReport {
        model: options.label,
        target: workload.target.to_string(),
        status: status.into(),
        note: None,
        environment: options.environment,
        workload: WorkloadRecord::of(workload),
        window_s,
        messages,
        msgs_per_s: messages as f64 / window_s,
        mb_per_s: result.bytes as f64 / window_s / 1e6,
        latency: Percentiles::of(&result.latency),
        latency_uncorrected: result.latency_uncorrected.as_ref().map(Percentiles::of),
        connect: Percentiles::of(&result.connect),
        connected: result.connected,
        errors: result.errors,
        error_examples: result.examples,
        client,
        server,
        server_stopped: None,
        syscalls,
    })
}

/// Client CPU per message and the bottleneck verdict.
fn client_report(
    workload: &Workload,
    cpu: &ClientCpu,
    messages: u64,
    server: Option<&ServerCost>,
) -> ClientReport {
    let busiest = cpu.thread_busy.iter().copied().fold(0.0, f64::max);
    let client_saturated = busiest >= 0.90;
    // A server that used nearly a whole core per thread it could run on is saturated; on this
    // scale a thread-per-connection server pinned to one core also counts as one core.
    let server_saturated = server.is_some_and(|s| s.cpu_busy >= 0.90);
    let bound = match (client_saturated, server.is_some(), server_saturated) {
        (true, true, true) => "both",
        (true, _, false) => "client",
        (false, true, true) => "server",
        (false, true, false) => "neither",
        (false, false, _) => "unknown",
        (true, false, _) => "client",
    };
    let warning = client_saturated.then(|| {
        format!(
            "client-bound: a loadgen thread used {:.0}% of its core, so msg/s measures the \
             client as much as the server; compare server CPU per message instead, or give the \
             client more threads (-t) and cores",
            busiest * 100.0
        )
    });
    ClientReport {
        threads: cpu.thread_busy.len(),
        cpu_user_s: cpu.user_s,
        cpu_system_s: cpu.system_s,
        cpu_us_per_msg: if messages > 0 {
            (cpu.user_s + cpu.system_s) * 1e6 / messages as f64
        } else {
            0.0
        },
        busiest_thread: busiest,
        bound: if workload.connections > 0 {
            bound.into()
        } else {
            "unknown".into()
        },
        warning,
    }
}

/// Output format of every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Prints reports in the chosen format.
pub fn render(reports: &[RunReport], format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => table(reports),
        Format::Json => serde_json::to_string_pretty(reports)? + "\n",
        Format::Csv => csv_text(reports)?,
    })
}

fn fmt_us(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn fmt_kib(kib: u64) -> String {
    if kib >= 10 * 1024 {
        format!("{:.0}M", kib as f64 / 1024.0)
    } else {
        format!("{kib}k")
    }
}

/// The side-by-side table: one row per report, then the notes that do not fit in a cell.
pub fn table(reports: &[RunReport]) -> String {
    let header = [
        "model",
        "msg/s",
        "MB/s",
        "p50us",
        "p90us",
        "p99us",
        "p99.9us",
        "maxus",
        "srv us/msg",
        "srv busy",
        "cs/msg v/i",
        "peak RSS",
        "RSS/conn",
        "thr",
        "fds",
        "cli us/msg",
        "bound",
        "errors",
        "syscalls/msg",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in reports {
        if r.status == "unavailable" || r.status == "skipped" {
            let mut row = vec![r.model.clone(), "-".into()];
            row.resize(header.len() - 1, "-".into());
            row.push(String::new());
            rows.push(row);
            continue;
        }
        let (srv, busy, cs, peak, per_conn, thr, fds) = match &r.server {
            Some(s) => (
                if s.cpu_user_us_per_msg.is_nan() {
                    format!("{:.2} (split n/a)", s.cpu_us_per_msg)
                } else {
                    format!(
                        "{:.2} ({:.2}+{:.2})",
                        s.cpu_us_per_msg, s.cpu_user_us_per_msg, s.cpu_system_us_per_msg
                    )
                },
                format!("{:.0}%", s.cpu_busy * 100.0),
                format!(
                    "{:.2}/{:.2}",
                    s.voluntary_cs_per_msg, s.involuntary_cs_per_msg
                ),
                fmt_kib(s.peak_rss_kib),
                format!("{:.1}k", s.rss_kib_per_conn),
                if s.processes > 1 {
                    format!("{}p", s.processes)
                } else {
                    s.threads.to_string()
                },
                s.open_fds.to_string(),
            ),
            None => (
                "n/a".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ),
        };
        let syscalls = match &r.syscalls.absent {
            Some(_) => "absent".into(),
            None => format!("{:.2}", r.syscalls.total_per_msg),
        };
        rows.push(vec![
            r.model.clone(),
            human(r.msgs_per_s),
            format!("{:.1}", r.mb_per_s),
            fmt_us(r.latency.p50_us),
            fmt_us(r.latency.p90_us),
            fmt_us(r.latency.p99_us),
            fmt_us(r.latency.p999_us),
            fmt_us(r.latency.max_us),
            srv,
            busy,
            cs,
            peak,
            per_conn,
            thr,
            fds,
            format!("{:.2}", r.client.cpu_us_per_msg),
            r.client.bound.clone(),
            r.errors.summary(),
            syscalls,
        ]);
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(|s| s.as_str())
            .collect(),
        &mut out,
    );
    for row in &rows {
        line(row.iter().map(|s| s.as_str()).collect(), &mut out);
    }

    // Notes: what a cell cannot say.
    let mut notes = Vec::new();
    for r in reports {
        if let Some(note) = &r.note {
            notes.push(format!("{}: {note}", r.model));
        }
        if let Some(unc) = &r.latency_uncorrected {
            notes.push(format!(
                "{}: open loop; latency from intended send time above; from actual send (coordinated omission not corrected): p50 {} p99 {} p99.9 {} max {} us",
                r.model,
                fmt_us(unc.p50_us),
                fmt_us(unc.p99_us),
                fmt_us(unc.p999_us),
                fmt_us(unc.max_us)
            ));
        }
        if r.connect.count > 0 {
            let said = r
                .server_stopped
                .as_deref()
                .map(|l| format!("; server: {l}"))
                .unwrap_or_default();
            notes.push(format!(
                "{}: {} connections, connect p50 {} p99 {} max {} us{said}",
                r.model,
                r.connected,
                fmt_us(r.connect.p50_us),
                fmt_us(r.connect.p99_us),
                fmt_us(r.connect.max_us)
            ));
        } else if let Some(line) = &r.server_stopped {
            notes.push(format!("{}: server: {line}", r.model));
        }
        if let Some(w) = &r.client.warning {
            notes.push(format!("{}: {w}", r.model));
        }
        for e in r.error_examples.iter().take(3) {
            notes.push(format!("{}: error: {e}", r.model));
        }
        if r.syscalls.absent.is_none() {
            notes.push(format!(
                "{}: syscalls/msg {}",
                r.model,
                r.syscalls.summary()
            ));
        }
    }
    if let Some(r) = reports
        .iter()
        .find(|r| r.syscalls.absent.is_some() && r.status != "unavailable")
    {
        notes.push(format!("syscalls/msg {}", r.syscalls.summary()));
    }
    if reports
        .iter()
        .any(|r| r.syscalls.absent.is_none() && !r.syscalls.per_msg.is_empty())
    {
        notes.push("syscalls were counted with perf tracepoints, which cost the server CPU too: srv us/msg and msg/s are higher and lower than without --syscalls".to_string());
    }
    if let Some(w) = reports
        .iter()
        .filter_map(|r| r.environment.busy_warning())
        .next()
    {
        notes.push(w);
    }
    if let Some(s) = reports.iter().filter_map(|r| r.server.as_ref()).next() {
        notes.push(format!(
            "srv us/msg = server CPU per message, {}; cs/msg = voluntary/involuntary context switches per message (summed over threads); srv busy = server CPU / wall time (100% = one core); RSS summed over the server's processes",
            if s.cpu_source == "schedstat" {
                "total from /proc/TID/schedstat (ns), split into user+system by the 10 ms tick counts".to_string()
            } else {
                format!("from /proc ticks of 10 ms: +/- {:.3} us/msg here", s.cpu_resolution_us_per_msg)
            }
        ));
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

/// The CSV header, one flat column per figure.
pub const CSV_HEADER: &[&str] = &[
    "model",
    "status",
    "target",
    "connections",
    "idle",
    "threads",
    "size",
    "pipeline",
    "rate",
    "duration_s",
    "messages",
    "msgs_per_s",
    "mb_per_s",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "connect_p99_us",
    "errors_total",
    "mismatch",
    "short_echo",
    "reset",
    "timeout",
    "connect",
    "closed",
    "http",
    "client_limit",
    "client_cpu_us_per_msg",
    "client_busiest_thread",
    "bound",
    "server_cpu_us_per_msg",
    "server_user_us_per_msg",
    "server_system_us_per_msg",
    "server_cpu_busy",
    "server_vcs_per_msg",
    "server_ivcs_per_msg",
    "server_peak_rss_kib",
    "server_rss_kib_per_conn",
    "server_threads",
    "server_processes",
    "server_open_fds",
    "syscalls_per_msg",
    "note",
    "kernel",
    "cpu_model",
    "cores",
    "netlab_version",
    "load_average",
];

fn csv_text(reports: &[RunReport]) -> anyhow::Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER)?;
    for r in reports {
        let s = r.server.clone().unwrap_or_default();
        let has_server = r.server.is_some();
        let opt = |v: f64| {
            if has_server {
                format!("{v}")
            } else {
                String::new()
            }
        };
        let record: Vec<String> = vec![
            r.model.clone(),
            r.status.clone(),
            r.target.clone(),
            r.workload.connections.to_string(),
            r.workload.idle.to_string(),
            r.workload.threads.to_string(),
            r.workload.size.to_string(),
            r.workload.pipeline.to_string(),
            r.workload.rate.map(|v| v.to_string()).unwrap_or_default(),
            r.window_s.to_string(),
            r.messages.to_string(),
            r.msgs_per_s.to_string(),
            r.mb_per_s.to_string(),
            r.latency.p50_us.to_string(),
            r.latency.p90_us.to_string(),
            r.latency.p99_us.to_string(),
            r.latency.p999_us.to_string(),
            r.latency.max_us.to_string(),
            r.connect.p99_us.to_string(),
            r.errors.total().to_string(),
            r.errors.mismatch.to_string(),
            r.errors.short_echo.to_string(),
            r.errors.reset.to_string(),
            r.errors.timeout.to_string(),
            r.errors.connect.to_string(),
            r.errors.closed.to_string(),
            r.errors.http.to_string(),
            r.errors.client_limit.to_string(),
            r.client.cpu_us_per_msg.to_string(),
            r.client.busiest_thread.to_string(),
            r.client.bound.clone(),
            opt(s.cpu_us_per_msg),
            opt(s.cpu_user_us_per_msg),
            opt(s.cpu_system_us_per_msg),
            opt(s.cpu_busy),
            opt(s.voluntary_cs_per_msg),
            opt(s.involuntary_cs_per_msg),
            opt(s.peak_rss_kib as f64),
            opt(s.rss_kib_per_conn),
            opt(s.threads as f64),
            opt(s.processes as f64),
            opt(s.open_fds as f64),
            if r.syscalls.absent.is_none() {
                r.syscalls.total_per_msg.to_string()
            } else {
                String::new()
            },
            r.note.clone().unwrap_or_default(),
            r.environment.kernel.clone(),
            r.environment.cpu_model.clone(),
            r.environment.cores.to_string(),
            r.environment.netlab_version.clone(),
            r.environment.load_average.clone(),
        ];
        writer.write_record(&record)?;
    }
    Ok(String::from_utf8(writer.into_inner()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(busy: f64) -> ClientCpu {
        ClientCpu {
            user_s: 0.5,
            system_s: 0.5,
            thread_busy: vec![0.2, busy],
        }
    }

    fn server(busy: f64) -> ServerCost {
        ServerCost {
            cpu_busy: busy,
            ..ServerCost::default()
        }
    }

    #[test]
    fn the_bottleneck_verdict() {
        let w = Workload::echo(crate::Target::Unix("/x".into()));
        let r = client_report(&w, &cpu(0.97), 1_000_000, Some(&server(0.5)));
        assert_eq!(r.bound, "client");
        assert!(r.warning.unwrap().starts_with("client-bound"));
        assert_eq!(r.cpu_us_per_msg, 1.0);
        assert_eq!(r.busiest_thread, 0.97);
        let r = client_report(&w, &cpu(0.5), 1_000_000, Some(&server(0.99)));
        assert_eq!((r.bound.as_str(), r.warning.is_none()), ("server", true));
        assert_eq!(
            client_report(&w, &cpu(0.95), 1, Some(&server(0.95))).bound,
            "both"
        );
        assert_eq!(
            client_report(&w, &cpu(0.3), 1, Some(&server(0.3))).bound,
            "neither"
        );
        assert_eq!(client_report(&w, &cpu(0.3), 1, None).bound, "unknown");
    }
}
