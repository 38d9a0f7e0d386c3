//! The four places a figure is written (results.json, results.csv, the printed table and
//! index.html) say the same thing for every row: the median, its min..max spread and its
//! `~` mark; a skipped row carries no figure anywhere.
//!
//! The rows are the results.json of a real run (`loadgen compare --models epoll-lt,poll,c
//! --rounds 2 -d 1s`, provisional figures from a busy machine), read back, plus one skipped
//! row; nothing here starts a server.

use netlab_loadgen::page::{self, Page};
use netlab_loadgen::render::{self, Format};
use netlab_loadgen::rounds::{self, Figure};
use netlab_loadgen::units::human;
use netlab_loadgen::{Environment, RunReport, Target, Workload};

fn reports() -> Vec<RunReport> {
    let text = include_str!("data/compare-two-rounds.json");
    let mut reports: Vec<RunReport> = serde_json::from_str(text).expect("the fixture parses");
    let workload = Workload::echo(Target::Unix("/nowhere".into()));
    reports.push(RunReport::skipped(
        "tokio",
        &workload,
        &Environment::default(),
        "skipped: echo-tokio not found in /nowhere",
    ));
    reports
}

/// The text the table and the page print for a figure, as `render` formats it.
fn printed(figure: Figure, v: f64) -> String {
    match figure {
        Figure::MsgsPerS => human(v),
        Figure::P99Us => {
            if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        }
        Figure::ServerCpuUsPerMsg => format!("{v:.2}"),
    }
}

fn csv_column(figure: Figure) -> &'static str {
    match figure {
        Figure::MsgsPerS => "msgs_per_s",
        Figure::P99Us => "p99_us",
        Figure::ServerCpuUsPerMsg => "server_cpu_us_per_msg",
    }
}

#[test]
fn json_csv_table_and_page_agree_on_every_median_spread_and_mark() {
    let reports = reports();
    let json: serde_json::Value =
        serde_json::from_str(&render::render(&reports, Format::Json).unwrap()).unwrap();
    let csv_text = render::render(&reports, Format::Csv).unwrap();
    let table = render::render(&reports, Format::Table).unwrap();
    let html = page::html(
        &Page {
            title: "netlab compare",
            workload: "w",
            charts: &[],
            preformatted: None,
        },
        &reports,
    )
    .unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), reports.len());
    let col = |r: &csv::StringRecord, name: &str| -> String {
        let i = header.iter().position(|h| h == name);
        r[i.unwrap_or_else(|| panic!("no CSV column {name}"))].to_string()
    };
    let mut checked = 0;
    for (i, r) in reports.iter().enumerate() {
        let row = &json[i];
        let record = &records[i];
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(r.model.as_str()))
            .unwrap_or_else(|| panic!("no table row for {}: {table}", r.model));
        let tr_start = html
            .find(&format!("data-model=\"{}\"", r.model))
            .unwrap_or_else(|| panic!("no page row for {}", r.model));
        let tr = &html[tr_start..tr_start + html[tr_start..].find("</tr>").unwrap()];
        let Some(rounds) = &r.rounds else {
            // The skipped row: no figure in any of the four.
            assert_eq!(row["status"], "skipped");
            assert_eq!(col(record, "status"), "skipped");
            for figure in [
                "messages",
                "msgs_per_s",
                "p99_us",
                "server_cpu_us_per_msg",
                "bound",
            ] {
                assert_eq!(
                    col(record, figure),
                    "",
                    "a skipped row's {figure} is empty, not 0"
                );
            }
            assert_eq!(
                col(record, "note"),
                "skipped: echo-tokio not found in /nowhere"
            );
            assert_eq!(col(record, "msgs_per_s_min"), "");
            let cells: Vec<&str> = line.split_whitespace().skip(1).collect();
            assert!(cells.iter().all(|c| *c == "-"), "{line}");
            assert!(
                tr.starts_with("data-model=\"tokio\"><td>tokio</td><td>-</td>"),
                "{tr}"
            );
            continue;
        };
        for figure in Figure::ALL {
            let s = rounds.spread(figure).expect("every figure has a spread");
            let key = csv_column(figure);
            let j = &row["rounds"][key];
            // JSON: the row's headline figure is the median of its rounds' values.
            assert_eq!(j["median"].as_f64().unwrap(), s.median, "{} {key}", r.model);
            let headline = match figure {
                Figure::MsgsPerS => &row["msgs_per_s"],
                Figure::P99Us => &row["latency"]["p99_us"],
                Figure::ServerCpuUsPerMsg => &row["server"]["cpu_us_per_msg"],
            };
            assert_eq!(headline.as_f64().unwrap(), s.median, "{} {key}", r.model);
            // CSV: the same median, min and max, to the last digit.
            let num = |c: &str| col(record, c).parse::<f64>().unwrap();
            assert_eq!(num(key), s.median, "{} CSV {key}", r.model);
            assert_eq!(
                num(&format!("{key}_min")),
                s.min,
                "{} CSV {key}_min",
                r.model
            );
            assert_eq!(
                num(&format!("{key}_max")),
                s.max,
                "{} CSV {key}_max",
                r.model
            );
            let nd = rounds.not_distinguishable.on(figure);
            assert_eq!(
                col(record, &format!("not_distinguishable_{key}")),
                nd.join(" ")
            );
            // Table and page: the median, then [min..max], then ~ exactly when another row
            // overlaps.
            let mark = if nd.is_empty() { "" } else { "~" };
            let spread = format!(
                "[{}..{}]{mark}",
                printed(figure, s.min),
                printed(figure, s.max)
            );
            let median = printed(figure, s.median);
            let cell = if figure == Figure::ServerCpuUsPerMsg {
                let server = r.server.as_ref().unwrap();
                format!(
                    "{median} ({:.2}+{:.2})",
                    server.cpu_user_us_per_msg, server.cpu_system_us_per_msg
                )
            } else {
                median
            };
            assert!(
                line.contains(&format!("{cell} {spread}")),
                "{} {key}: table {line}",
                r.model
            );
            assert!(
                tr.contains(&format!(
                    "<td>{cell}<br><span class=\"spread\">{spread}</span></td>"
                )),
                "{} {key}: page {tr}",
                r.model
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 9, "three rows with rounds, three figures each");
}

#[test]
fn not_distinguishable_is_symmetric_and_exactly_overlap() {
    // The marks recomputed from the rounds' values, not read from the fixture.
    let mut reports = reports();
    for r in &mut reports {
        if let Some(rounds) = r.rounds.as_mut() {
            rounds.not_distinguishable = Default::default();
        }
    }
    rounds::mark_overlaps(&mut reports);
    let mut marks = 0;
    for figure in Figure::ALL {
        for a in reports.iter().filter(|r| r.rounds.is_some()) {
            for b in reports.iter().filter(|r| r.rounds.is_some()) {
                if a.model == b.model {
                    continue;
                }
                let (sa, sb) = (
                    a.rounds.as_ref().unwrap().spread(figure).unwrap(),
                    b.rounds.as_ref().unwrap().spread(figure).unwrap(),
                );
                let overlap = sa.min <= sb.max && sb.min <= sa.max;
                let marked = |x: &RunReport, y: &RunReport| {
                    x.rounds
                        .as_ref()
                        .unwrap()
                        .not_distinguishable
                        .on(figure)
                        .contains(&y.model)
                };
                assert_eq!(
                    marked(a, b),
                    overlap,
                    "{} ~ {} {figure:?}",
                    a.model,
                    b.model
                );
                assert_eq!(marked(a, b), marked(b, a), "symmetric");
                marks += usize::from(marked(a, b));
            }
        }
    }
    // The fixture has overlapping and separate pairs: both answers are exercised.
    assert!(marks > 0 && marks < 18, "{marks} marks");
}

#[test]
fn unstable_is_exactly_a_spread_above_ten_percent_of_the_median() {
    let base = reports().remove(0);
    let round = |msgs: f64| {
        let mut r = base.clone();
        r.rounds = None;
        r.msgs_per_s = msgs;
        r
    };
    let unstable = |values: &[f64]| {
        let row = rounds::combine(values.iter().map(|v| round(*v)).collect(), "1 1 1".into());
        let rounds = row.rounds.unwrap();
        assert_eq!(rounds.msgs_per_s.as_ref().unwrap().median, values[1]);
        rounds.unstable.contains(&Figure::MsgsPerS)
    };
    // (max - min) / median: 10 / 105 = 9.5% is stable, 11 / 105 = 10.5% is not.
    assert!(!unstable(&[100.0, 105.0, 110.0]));
    assert!(unstable(&[100.0, 105.0, 111.0]));
    // Below the median the same: the range, not the distance from the median, counts.
    assert!(unstable(&[94.0, 105.0, 105.5]));
}

#[test]
fn the_page_escapes_every_name_it_did_not_write() {
    let mut reports = reports();
    reports[0].model = "<b>x&y</b>".into();
    reports[0].note = Some("a \"quoted\" <note>".into());
    let html = page::html(
        &Page {
            title: "t<i>",
            workload: "w & <w>",
            charts: &[],
            preformatted: Some("<pre>"),
        },
        &reports,
    )
    .unwrap();
    for raw in ["<b>x&y</b>", "<note>", "t<i>", "w & <w>", "<pre><pre>"] {
        assert!(!html.contains(raw), "{raw} unescaped");
    }
    assert!(html
        .contains("data-model=\"&lt;b&gt;x&amp;y&lt;/b&gt;\"><td>&lt;b&gt;x&amp;y&lt;/b&gt;</td>"));
    assert!(html.contains("a &quot;quoted&quot; &lt;note&gt;"));
    assert!(html.contains("<b>workload:</b> w &amp; &lt;w&gt;"));
}
