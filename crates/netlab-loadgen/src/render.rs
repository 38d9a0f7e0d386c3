//! Printing reports: the side-by-side table (comfy-table), with the notes no cell can hold,
//! JSON (serde) and CSV (one flat column per figure).

use comfy_table::{CellAlignment, ColumnConstraint, Table, TableComponent};

use crate::report::{RunReport, Status};
use crate::rounds::{self, Figure};
use crate::units::human;

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

pub(crate) fn fmt_us(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub(crate) fn fmt_kib(kib: u64) -> String {
    if kib >= 10 * 1024 {
        format!("{:.0}M", kib as f64 / 1024.0)
    } else {
        format!("{kib}k")
    }
}

/// A plain text table: the first column left-aligned, the others right-aligned, two spaces
/// between columns, a line of dashes under the header, no other rules; no trailing blanks.
/// Scripts find a row by its first word.
pub fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut table = Table::new();
    // Every rule off, then only the ones wanted: a blank between columns, dashes under the
    // header.
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_style(TableComponent::VerticalLines, ' ');
    table.set_style(TableComponent::MiddleHeaderIntersections, ' ');
    table.set_style(TableComponent::HeaderLines, '-');
    table.set_header(header.iter().copied());
    for row in rows {
        table.add_row(row.iter().map(String::as_str));
    }
    for (i, column) in table.column_iter_mut().enumerate() {
        // One blank of padding on the left plus the blank rule: two spaces between columns.
        column.set_padding(if i == 0 { (0, 0) } else { (1, 0) });
        column.set_constraint(ColumnConstraint::ContentWidth);
        if i > 0 {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The columns of [`table`].
pub const TABLE_HEADER: &[&str] = &[
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
    "VmSize/conn",
    "thr",
    "fds",
    "cli us/msg",
    "bound",
    "errors",
    "syscalls/msg",
];

/// ` [min..max]` after a median, and `~` when another row's range overlaps it; nothing for a
/// single round.
fn spread_suffix(r: &RunReport, figure: Figure, fmt: &dyn Fn(f64) -> String) -> String {
    let Some(rounds) = &r.rounds else {
        return String::new();
    };
    let Some(s) = rounds.spread(figure) else {
        return String::new();
    };
    let mark = if rounds.not_distinguishable.on(figure).is_empty() {
        ""
    } else {
        "~"
    };
    format!(" [{}..{}]{mark}", fmt(s.min), fmt(s.max))
}

/// One report's cells, in [`TABLE_HEADER`]'s order.
pub fn row(r: &RunReport) -> Vec<String> {
    if !r.status.measured() {
        let mut row = vec![r.model.clone(), "-".into()];
        row.resize(TABLE_HEADER.len() - 1, "-".into());
        row.push(String::new());
        return row;
    }
    let mut server_cells: Vec<String> = match &r.server {
        Some(s) => vec![
            if s.cpu_user_us_per_msg.is_nan() {
                format!("{:.2} (split n/a)", s.cpu_us_per_msg)
            } else {
                format!(
                    "{:.2} ({:.2}+{:.2})",
                    s.cpu_us_per_msg, s.cpu_user_us_per_msg, s.cpu_system_us_per_msg
                )
            } + &spread_suffix(r, Figure::ServerCpuUsPerMsg, &|v| format!("{v:.2}")),
            format!("{:.0}%", s.cpu_busy * 100.0),
            format!(
                "{:.2}/{:.2}",
                s.voluntary_cs_per_msg, s.involuntary_cs_per_msg
            ),
            fmt_kib(s.peak_rss_kib),
            format!("{:.1}k", s.rss_kib_per_conn),
            if s.vm_size_kib_per_conn >= 10.0 * 1024.0 {
                format!("{:.1}M", s.vm_size_kib_per_conn / 1024.0)
            } else {
                format!("{:.1}k", s.vm_size_kib_per_conn)
            },
            if s.processes > 1 {
                format!("{}p", s.processes)
            } else {
                s.threads.to_string()
            },
            s.open_fds.to_string(),
        ],
        None => {
            let mut cells = vec!["n/a".to_string()];
            cells.resize(8, "-".into());
            cells
        }
    };
    let syscalls = match &r.syscalls.absent {
        Some(_) => "absent".into(),
        None => format!("{:.2}", r.syscalls.total_per_msg),
    };
    let mut cells = vec![
        r.model.clone(),
        human(r.msgs_per_s) + &spread_suffix(r, Figure::MsgsPerS, &human),
        format!("{:.1}", r.mb_per_s),
        fmt_us(r.latency.p50_us),
        fmt_us(r.latency.p90_us),
        fmt_us(r.latency.p99_us) + &spread_suffix(r, Figure::P99Us, &fmt_us),
        fmt_us(r.latency.p999_us),
        fmt_us(r.latency.max_us),
    ];
    cells.append(&mut server_cells);
    cells.extend([
        format!("{:.2}", r.client.cpu_us_per_msg),
        r.client.bound.clone(),
        r.errors.summary(),
        syscalls,
    ]);
    cells
}

/// The side-by-side table: one row per report, then the notes that do not fit in a cell.
pub fn table(reports: &[RunReport]) -> String {
    let rows: Vec<Vec<String>> = reports.iter().map(row).collect();
    let mut out = text_table(TABLE_HEADER, &rows);
    let notes = notes(reports);
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

/// What a cell cannot say: per-model notes, then the ones that hold for the whole table.
pub fn notes(reports: &[RunReport]) -> Vec<String> {
    let mut notes = rounds::notes(reports);
    if reports.iter().any(|r| r.rounds.is_some()) {
        // rounds::combine keeps one round whole for the figures without a spread.
        notes.push("a figure without [a..b] is from the row's round whose msg/s is nearest the median (MB/s scaled to the median): a median p99 can sit above that round's p99.9".into());
    }
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
        if let Some(c) = &r.churn {
            let count = |n: Option<u64>| n.map_or("n/a".to_string(), |n| n.to_string());
            notes.push(format!(
                "{}: churn: {} connections lived and closed (msg/s is connections/s, syscalls/msg are per connection); TIME_WAIT left: client side {}, server side {}",
                r.model,
                c.completed,
                count(c.time_wait_client),
                count(c.time_wait_server)
            ));
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
        .find(|r| r.syscalls.absent.is_some() && r.status != Status::Unavailable)
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
            "srv us/msg = server CPU per message, {}; cs/msg = voluntary/involuntary context switches per message (summed over threads); srv busy = server CPU / wall time (100% = one core); RSS and VmSize summed over the server's processes; VmSize/conn = virtual size reserved per connection (a thread's whole stack), RSS/conn = what was touched",
            if s.cpu_source == "schedstat" {
                "total from /proc/TID/schedstat (ns), split into user+system by the 10 ms tick counts".to_string()
            } else {
                format!("from /proc ticks of 10 ms: +/- {:.3} us/msg here", s.cpu_resolution_us_per_msg)
            }
        ));
    }
    notes
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
    "server_vm_size_kib_per_conn",
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
    "rounds",
    "msgs_per_s_min",
    "msgs_per_s_max",
    "p99_us_min",
    "p99_us_max",
    "server_cpu_us_per_msg_min",
    "server_cpu_us_per_msg_max",
    "unstable",
    "not_distinguishable_msgs_per_s",
    "not_distinguishable_p99_us",
    "not_distinguishable_server_cpu_us_per_msg",
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
            r.status.to_string(),
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
            opt(s.vm_size_kib_per_conn),
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
        let mut record = record;
        if !r.status.measured() {
            // A skipped or unavailable row was not measured: its figures are empty, not 0, so
            // that a spreadsheet does not average or plot them as zeros.
            let column = |name| CSV_HEADER.iter().position(|h| *h == name).unwrap();
            for cell in &mut record[column("duration_s")..=column("syscalls_per_msg")] {
                cell.clear();
            }
        }
        record.extend(rounds_columns(r));
        writer.write_record(&record)?;
    }
    Ok(String::from_utf8(writer.into_inner()?)?)
}

/// The rounds columns: empty for a single round.
fn rounds_columns(r: &RunReport) -> Vec<String> {
    let Some(rounds) = &r.rounds else {
        return vec![String::new(); 11];
    };
    let mut cells = vec![rounds.count.to_string()];
    for figure in Figure::ALL {
        match rounds.spread(figure) {
            Some(s) => cells.extend([s.min.to_string(), s.max.to_string()]),
            None => cells.extend([String::new(), String::new()]),
        }
    }
    let names: Vec<&str> = rounds.unstable.iter().map(|f| f.label()).collect();
    cells.push(names.join(" "));
    for figure in Figure::ALL {
        cells.push(rounds.not_distinguishable.on(figure).join(" "));
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_table_aligns_without_rules_or_trailing_blanks() {
        let text = text_table(
            &["model", "msg/s", "note"],
            &[
                vec!["epoll-lt".into(), "12.3k".into(), String::new()],
                vec!["c".into(), "1".into(), "x".into()],
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "model     msg/s  note");
        assert!(lines[1].chars().all(|c| c == '-' || c == ' '), "{text}");
        assert_eq!(lines[2], "epoll-lt  12.3k");
        assert_eq!(lines[3], "c             1     x");
    }
}
