//! `loadgen compare` and `sweep` end to end on tiny workloads: rounds and spreads, the report
//! folder and its page, and the bad input refused before any server starts.
//!
//! The echo servers belong to the root package, so they are built once (`common::server_dir`:
//! `cargo build --bins -p netlab`, same target dir and profile) and passed with `--bin-dir`.
//! Every run is a few hundred milliseconds of load.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::server_dir;
use netlab_loadgen::servers;

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen")
}

/// `compare` with a tiny workload into `out`, plus `extra` flags.
fn tiny_compare(models: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "compare",
        "--models",
        models,
        "-c",
        "4",
        "-d",
        "200ms",
        "--warmup",
        "50ms",
        "--bin-dir",
        server_dir().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    loadgen(&args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn two_rounds_give_medians_spreads_and_marks_in_table_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_compare("epoll-lt,poll", dir.path(), &["--rounds", "2"]);
    let table = stdout(&out);
    assert!(out.status.success(), "{table}\n{}", stderr(&out));
    // The rounds ran interleaved: epoll-lt first in round 1, poll first in round 2.
    let progress = stderr(&out);
    let order: Vec<&str> = progress
        .lines()
        .filter(|l| l.contains("(round "))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        order,
        ["epoll-lt", "poll", "poll", "epoll-lt"],
        "{progress}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2, "one row per model, not per round");
    for row in rows {
        let model = row["model"].as_str().unwrap();
        let rounds = &row["rounds"];
        assert_eq!(rounds["count"], 2, "{model}");
        assert_eq!(rounds["spread_is"], "min..max of the rounds");
        let msgs = &rounds["msgs_per_s"];
        let values: Vec<f64> = msgs["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(values.len(), 2);
        let (lo, hi) = (values[0].min(values[1]), values[0].max(values[1]));
        assert_eq!(msgs["min"].as_f64().unwrap(), lo);
        assert_eq!(msgs["max"].as_f64().unwrap(), hi);
        assert_eq!(msgs["median"].as_f64().unwrap(), (lo + hi) / 2.0);
        assert_eq!(
            row["msgs_per_s"], msgs["median"],
            "the row holds the median"
        );
        assert!(rounds["server_cpu_us_per_msg"]["median"].as_f64().unwrap() > 0.0);
        assert!(rounds["not_distinguishable"]["p99_us"].is_array());
        // The table shows the same spread.
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(model))
            .unwrap_or_else(|| panic!("no {model} row: {table}"));
        assert!(line.contains(".."), "{line}");
    }
    // Overlap is symmetric, and the table's marks follow the JSON.
    for figure in ["msgs_per_s", "p99_us", "server_cpu_us_per_msg"] {
        let nd = |i: usize| rows[i]["rounds"]["not_distinguishable"][figure].clone();
        let a_sees_b = nd(0).as_array().unwrap().iter().any(|m| m == "poll");
        let b_sees_a = nd(1).as_array().unwrap().iter().any(|m| m == "epoll-lt");
        assert_eq!(a_sees_b, b_sees_a, "{figure}");
        let label = match figure {
            "msgs_per_s" => "msg/s",
            "p99_us" => "p99",
            _ => "srv us/msg",
        };
        let noted = table.contains(&format!("not distinguishable on {label}: epoll-lt ~ poll"));
        assert_eq!(a_sees_b, noted, "{figure}: {table}");
    }
    assert!(table.contains("median of 2 interleaved rounds"), "{table}");

    let csv_text = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 2);
    let col = |r: &csv::StringRecord, name: &str| {
        r[header.iter().position(|h| h == name).unwrap()].to_string()
    };
    for (record, row) in records.iter().zip(rows) {
        assert_eq!(col(record, "rounds"), "2");
        let min: f64 = col(record, "msgs_per_s_min").parse().unwrap();
        assert_eq!(min, row["rounds"]["msgs_per_s"]["min"].as_f64().unwrap());
        let nd: Vec<String> = row["rounds"]["not_distinguishable"]["msgs_per_s"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        assert_eq!(col(record, "not_distinguishable_msgs_per_s"), nd.join(" "));
    }
}

#[test]
fn the_report_page_holds_every_row_every_chart_and_the_notes() {
    let dir = tempfile::tempdir().unwrap();
    // fork with more connections than --max-processes: a skipped row, which the page must
    // still show (greyed) and explain.
    let out = tiny_compare(
        "epoll-et,select,fork",
        dir.path(),
        &["--rounds", "1", "--max-processes", "1"],
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("index.html"), "the page is named");
    let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    for model in ["epoll-et", "select", "fork"] {
        assert!(
            page.contains(&format!(
                "<tr class=\"{}\" data-model=\"{model}\"><td>{model}</td>",
                if model == "fork" { "skipped" } else { "ok" }
            )),
            "{model} row"
        );
    }
    for chart in ["throughput.svg", "p99.svg", "cpu-per-msg.svg"] {
        let svg = std::fs::read_to_string(dir.path().join(chart)).unwrap();
        let body = &svg[svg.find("<svg").unwrap()..];
        assert!(page.contains(body), "{chart} is inlined whole");
        assert!(page.contains(&format!("id=\"{chart}\"")), "{chart}");
    }
    assert_eq!(page.matches("<svg").count(), 3);
    assert!(
        page.contains("fork: skipped: would fork 4 processes"),
        "the skip note"
    );
    assert!(page.contains("<b>workload:</b> 4 connections"));
    assert!(page.contains("<b>environment:</b> Linux"));
    // Nothing from the network: no script, no external link but the folder's own files.
    assert!(!page.contains("<script"));
    // (The SVGs' xmlns is a name, not a fetch.)
    for fetch in ["href=\"http", " src=", "url(", "@import"] {
        assert!(!page.contains(fetch), "no network: {fetch}");
    }
}

/// A usage error: exit status 2 and one line on stderr.
fn assert_refused(out: &Output, says: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(says), "{err}");
}

#[test]
fn a_workload_no_run_can_use_is_refused_before_any_server_starts() {
    let base = tempfile::tempdir().unwrap();
    // An empty --bin-dir: had compare gone as far as starting servers, it would have reported
    // each as unavailable and written a report.
    let bins = tempfile::tempdir().unwrap();
    for (flags, says) in [
        (&["-c", "0"][..], "at least one active connection"),
        (&["--size", "1"][..], "--size must be at least"),
    ] {
        let out_dir = base.path().join("never");
        let mut args = vec![
            "compare",
            "-d",
            "1s",
            "--bin-dir",
            bins.path().to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ];
        args.extend(flags);
        let out = loadgen(&args);
        assert_refused(&out, says);
        assert!(stdout(&out).is_empty(), "no table");
        assert!(!out_dir.exists(), "no report folder");
    }
    let out = loadgen(&[
        "sweep",
        "--size",
        "512,1",
        "--bin-dir",
        bins.path().to_str().unwrap(),
    ]);
    assert_refused(&out, "--size must be at least");
}

#[test]
fn out_onto_a_folder_with_files_is_refused_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("results.json"), "keep me").unwrap();
    let out = tiny_compare("poll", dir.path(), &[]);
    assert_refused(&out, "not empty");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        "keep me"
    );
}

#[test]
fn sweep_help_names_the_folder_it_writes_and_git_ignores_it() {
    let help = stdout(&loadgen(&["sweep", "--help"]));
    assert!(
        help.contains("sweep ./netlab-sweep-YYYYmmdd-HHMMSS"),
        "{help}"
    );
    let help = stdout(&loadgen(&["compare", "--help"]));
    assert!(
        help.contains("compare ./netlab-report-YYYYmmdd-HHMMSS"),
        "{help}"
    );
    let root = servers::workspace_root().unwrap();
    let ignore = std::fs::read_to_string(root.join(".gitignore")).unwrap();
    for folder in ["/netlab-report*/", "/netlab-sweep*/"] {
        assert!(
            ignore.lines().any(|l| l == folder),
            "{folder} in .gitignore"
        );
    }
}

#[test]
fn a_server_pid_that_is_not_the_listener_is_refused() {
    let server = servers::RunningServer::start(
        &server_dir().join("echo-poll"),
        &[],
        &servers::Listen::Tcp,
        None,
    )
    .unwrap();
    let target = server.target.to_string();
    let common = [
        "-c", "2", "-d", "100ms", "--warmup", "0s", "--format", "json",
    ];
    let mut args = vec![target.as_str(), "--server-pid", "1"];
    args.extend(common);
    let out = loadgen(&args);
    assert_refused(&out, "--server-pid 1 is not the server on");
    // The server's own pid is accepted.
    let pid = server.pid.to_string();
    let mut args = vec![target.as_str(), "--server-pid", &pid];
    args.extend(common);
    let out = loadgen(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(server.stop().exit_ok);
}

#[test]
fn a_model_not_built_or_absent_is_skipped_with_its_reason() {
    // A stand-in for echo-c built without a C compiler: it says why and exits 69
    // (EX_UNAVAILABLE) before any listening line. echo-tokio is simply absent.
    use std::os::unix::fs::PermissionsExt;
    let bins = tempfile::tempdir().unwrap();
    let fake = bins.path().join("echo-c");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'echo-c: not built: no C compiler (cc)' >&2\nexit 69\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(
        server_dir().join("echo-poll"),
        bins.path().join("echo-poll"),
    )
    .unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = loadgen(&[
        "compare",
        "--models",
        "c,tokio,poll",
        "-c",
        "2",
        "-d",
        "100ms",
        "--warmup",
        "0s",
        "--rounds",
        "1",
        "--bin-dir",
        bins.path().to_str().unwrap(),
        "--out",
        out_dir.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "skips are not failures: {}",
        stderr(&out)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |model: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == model)
            .unwrap()
            .clone()
    };
    assert_eq!(row("c")["status"], "skipped");
    assert_eq!(
        row("c")["note"],
        "skipped: not built: no C compiler (cc)",
        "the server's own reason"
    );
    assert_eq!(row("tokio")["status"], "skipped");
    assert!(row("tokio")["note"]
        .as_str()
        .unwrap()
        .starts_with("skipped: echo-tokio not found in"));
    assert_eq!(row("poll")["status"], "ok");
    // A skipped model is no bar in any chart (not a bar of zero); the page still lists it.
    for chart in ["throughput.svg", "p99.svg", "cpu-per-msg.svg"] {
        let svg = std::fs::read_to_string(out_dir.path().join(chart)).unwrap();
        // plotters writes a label as `>\nNAME\n</text>`.
        assert!(
            svg.contains(">\npoll\n</text>"),
            "{chart} has the measured row"
        );
        for skipped in ["c", "tokio"] {
            assert!(
                !svg.contains(&format!(">\n{skipped}\n</text>")),
                "{chart} charts skipped {skipped}"
            );
        }
    }
    let page = std::fs::read_to_string(out_dir.path().join("index.html")).unwrap();
    assert!(page.contains("<tr class=\"skipped\" data-model=\"c\">"));
}

#[test]
fn vmsize_per_connection_is_beside_rss_and_larger_for_threads() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_compare("blocking", dir.path(), &["--rounds", "1"]);
    let table = stdout(&out);
    assert!(out.status.success(), "{table}{}", stderr(&out));
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .collect();
    let rss = header
        .iter()
        .position(|h| *h == "RSS/conn")
        .expect("RSS/conn");
    assert_eq!(header.get(rss + 1), Some(&"VmSize/conn"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let server = &json[0]["server"];
    let vm = server["vm_size_kib_per_conn"].as_f64().unwrap();
    let rss = server["rss_kib_per_conn"].as_f64().unwrap();
    // A thread per connection reserves its whole stack (megabytes) and touches a few pages.
    assert!(
        vm > rss && vm >= 256.0,
        "VmSize/conn {vm} KiB, RSS/conn {rss} KiB"
    );
}

#[test]
fn transport_tcp_and_unix_gives_two_rows_per_model_and_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_compare(
        "poll,epoll-et",
        dir.path(),
        // unix first: the ratio must still be unix over tcp, found by name, not position;
        // with rounds, of the medians.
        &["--rounds", "2", "--transport", "unix,tcp"],
    );
    let table = stdout(&out);
    assert!(out.status.success(), "{table}{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let rows: Vec<(String, String)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap().to_string(),
                r["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let models: Vec<&str> = rows.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        models,
        ["poll unix", "poll tcp", "epoll-et unix", "epoll-et tcp"]
    );
    for (model, target) in &rows {
        assert_eq!(
            model.ends_with(" unix"),
            target.starts_with("unix:"),
            "{model} {target}"
        );
    }
    for model in ["poll tcp", "poll unix", "epoll-et tcp", "epoll-et unix"] {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("{model} "))),
            "{table}"
        );
    }
    // One ratio line per model: unix msg/s over tcp msg/s, as printed in the two rows.
    let ratios = table
        .split("same run, medians of 2 rounds (ratio = unix / tcp):\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no ratio table: {table}"));
    let median = |name: &str| {
        let row = json.as_array().unwrap().iter().find(|r| r["model"] == name);
        let row = row.unwrap_or_else(|| panic!("no {name} row"));
        assert_eq!(row["msgs_per_s"], row["rounds"]["msgs_per_s"]["median"]);
        row["msgs_per_s"].as_f64().unwrap()
    };
    for model in ["poll", "epoll-et"] {
        let line = ratios
            .lines()
            .find(|l| l.split_whitespace().next() == Some(model))
            .unwrap_or_else(|| panic!("{model}: {ratios}"));
        let cells: Vec<&str> = line.split_whitespace().collect();
        let tcp = median(&format!("{model} tcp"));
        let unix = median(&format!("{model} unix"));
        assert_eq!(cells[3], format!("{:.2}x", unix / tcp), "{line}");
    }
    assert!(std::fs::read_to_string(dir.path().join("index.html"))
        .unwrap()
        .contains("TCP loopback against a Unix socket"));
}

#[test]
fn a_sweep_writes_its_page_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen(&[
        "sweep",
        "--idle",
        "0,20",
        "-c",
        "3",
        "--models",
        "epoll-lt,poll",
        "-d",
        "150ms",
        "--warmup",
        "50ms",
        "--rounds",
        "2",
        "--bin-dir",
        server_dir().to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let page = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    for model in [
        "epoll-lt idle=0",
        "poll idle=0",
        "epoll-lt idle=20",
        "poll idle=20",
    ] {
        assert!(page.contains(&format!("<td>{model}</td>")), "{model}");
    }
    for chart in [
        "sweep-throughput.svg",
        "sweep-cpu-per-msg.svg",
        "sweep-p99.svg",
    ] {
        assert!(page.contains(&format!("id=\"{chart}\"")), "{chart}");
    }
    assert_eq!(page.matches("<svg").count(), 3);
    assert!(page.contains("messages/s by idle:"), "the summary matrices");
    // Models are told apart at the same value: a row's marks name only rows at its value.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    for row in json.as_array().unwrap() {
        let model = row["model"].as_str().unwrap();
        let value = model.split_whitespace().nth(1).unwrap();
        for other in row["rounds"]["not_distinguishable"]["msgs_per_s"]
            .as_array()
            .unwrap()
        {
            assert!(
                other.as_str().unwrap().ends_with(value),
                "{model} ~ {other}"
            );
        }
    }
}
