//! What the `loadgen` commands do once their flags are read: run one target (echo or HTTP) and
//! print it ([`run_one`]), print a comparison
//! ([`print_outcome`]), and write to a stdout that may close early ([`print_out`]:
//! `loadgen ... | head -1` ends quietly). The binary, `src/bin/loadgen.rs`, holds only the
//! flags and the exit status.

use std::io::{self, Write};

use crate::compare;
use crate::report::{self, Environment, Format, MeasureOptions, RunReport};
use crate::workload::{BadArgument, Protocol, Workload};

/// One target, measured and printed.
pub struct OneRun {
    pub workload: Workload,
    /// What the report calls the target (the URL for HTTP).
    pub label: String,
    pub server_pid: Option<i32>,
    pub syscalls: bool,
    pub format: Format,
}

/// Runs one target and prints its report; returns whether the run went without error.
///
/// Refused up front, as a [`BadArgument`]: a workload [`Workload::check`] refuses, and
/// `--syscalls` without a server pid (there is no process to count). A run in which no
/// connection came up is one line ("is the server running?"), not a table of zeros; JSON and
/// CSV still get the report, with its connect errors, for scripts.
pub fn run_one(run: OneRun) -> anyhow::Result<bool> {
    run.workload.check()?;
    if run.syscalls && run.server_pid.is_none() {
        return Err(BadArgument(
            "--syscalls counts the server's syscalls, so it needs --server-pid PID".into(),
        )
        .into());
    }
    let report = report::measure(
        &run.workload,
        MeasureOptions {
            label: run.label,
            server_pid: run.server_pid,
            syscalls: run.syscalls,
            environment: Environment::detect(&run.workload),
        },
    )?;
    if report.connected == 0 && run.format == Format::Table {
        let why = report.error_examples.first().map_or("", String::as_str);
        anyhow::bail!(
            "no connection to {} came up ({why}); is the server running?",
            run.workload.target
        );
    }
    let text = match (&run.workload.protocol, run.format) {
        (Protocol::Http { .. }, Format::Table) => http_table(&report),
        (_, format) => report::render(std::slice::from_ref(&report), format)?,
    };
    print_out(&text)?;
    Ok(!report.failed())
}

/// Writes to stdout. A reader that has gone (a closed pipe: `| head -1`) is not an error: the
/// rest of the output is dropped quietly, as Unix tools do, and the run's status still counts.
pub fn print_out(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// clap's error as one line: its lines up to the first blank one (usage and tips follow).
pub fn usage_error_line(rendered: &str) -> String {
    let lines: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let line = lines.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}

/// Prints a comparison or sweep: its reports, then (as a table) the summary, environment and
/// workload lines, and where the files went. Returns whether every run went without error.
pub fn print_outcome(outcome: &compare::Outcome, format: Format) -> anyhow::Result<bool> {
    print_out(&report::render(&outcome.reports, format)?)?;
    let mut footer = String::new();
    if format == Format::Table {
        if let Some(summary) = &outcome.summary {
            footer += &format!("{summary}\n");
        }
        if let Some(r) = outcome.reports.first() {
            footer += &format!("{}\n", r.environment.line());
            let transport = compare::transport(&outcome.reports);
            footer += &format!("workload: {} over {transport}\n", outcome.workload);
        }
    }
    let names: Vec<String> = outcome
        .files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    // The folder goes to stdout in table mode, to stderr otherwise (stdout is the data then).
    let line = format!(
        "report written to {}/ ({})",
        outcome.out_dir.display(),
        names.join(", ")
    );
    if format == Format::Table {
        footer += &format!("{line}\n");
    } else {
        eprintln!("{line}");
    }
    print_out(&footer)?;
    Ok(!outcome.failed())
}

/// The HTTP report: requests/s, GB/s, latency, server cost per request and per GiB.
pub fn http_table(r: &RunReport) -> String {
    let mut out = String::new();
    let secs = r.window_s;
    out += &format!("{}  ({})\n", r.model, r.environment.workload);
    out += &format!(
        "requests/s {:.0}   GB/s {:.3}   requests {}   errors {}\n",
        r.messages as f64 / secs,
        r.mb_per_s / 1e3,
        r.messages,
        r.errors.summary()
    );
    out += &format!(
        "latency us  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}\n",
        r.latency.p50_us, r.latency.p90_us, r.latency.p99_us, r.latency.p999_us, r.latency.max_us
    );
    out += &format!(
        "client      {:.2} us CPU/request, busiest thread {:.0}% ({})\n",
        r.client.cpu_us_per_msg,
        r.client.busiest_thread * 100.0,
        r.client.bound
    );
    match &r.server {
        Some(s) => {
            let split = if s.cpu_user_us_per_msg.is_nan() {
                "user/sys split unknown: no clock tick in the window".to_string()
            } else {
                format!(
                    "{:.2} user + {:.2} sys",
                    s.cpu_user_us_per_msg, s.cpu_system_us_per_msg
                )
            };
            out += &format!(
                "server      {:.2} us CPU/request ({split}; {}), {:.1} ms CPU/GiB, busy {:.0}%\n",
                s.cpu_us_per_msg,
                if s.cpu_source == "schedstat" {
                    "total from schedstat, split by ticks".to_string()
                } else {
                    format!("10 ms ticks: +/- {:.3}", s.cpu_resolution_us_per_msg)
                },
                s.cpu_ms_per_gib,
                s.cpu_busy * 100.0
            );
            out += &format!(
                "            cs/request {:.3} vol {:.3} invol; peak RSS {} KiB; threads {}; fds {}\n",
                s.voluntary_cs_per_msg, s.involuntary_cs_per_msg, s.peak_rss_kib, s.threads, s.open_fds
            );
        }
        None => out += "server      cost n/a (give --server-pid PID)\n",
    }
    out += &format!("syscalls    {}\n", r.syscalls.summary());
    if let Some(w) = &r.client.warning {
        out += &format!("warning: {w}\n");
    }
    for e in &r.error_examples {
        out += &format!("error: {e}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_error_is_its_first_paragraph() {
        let rendered = "error: invalid value '-1' for '--connections <CONNECTIONS>': '-1' must be a non-negative number\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_error_line(rendered),
            "invalid value '-1' for '--connections <CONNECTIONS>': '-1' must be a non-negative number"
        );
    }
}
