//! `sweep`: every model at every value of one dimension (idle connections, active
//! connections, message size), with one line per model in each chart and two small matrices
//! (msg/s and server CPU per message, model by value) after the table.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::charts::{self, Series};
use crate::compare::{place, run_rounds, transport, Outcome, Plan};
use crate::folder::{output_dir, write_results};
use crate::page::{self, Page};
use crate::report::{Environment, RunReport, Status};
use crate::rounds::{self, Figure};
use crate::servers::{self, ModelSpec};
use crate::{BadArgument, Workload};

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

/// What a sweep's flags ask for: the dimension to vary and its values, and the shape of the
/// workload in the other two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepChoice {
    pub dimension: Dimension,
    pub values: Vec<u64>,
    pub connections: u64,
    pub idle: u64,
    pub size: u64,
}

impl SweepChoice {
    /// The idle connections swept when no list is given.
    pub const DEFAULT_IDLE: [u64; 4] = [0, 100, 1000, 10_000];

    /// The swept dimension is the one given several values; single values only set the
    /// workload's shape (`-c 5` with `--idle 0,1000` sweeps idle at 5 active connections).
    /// With no list, idle connections are swept: the given single value, or
    /// [`Self::DEFAULT_IDLE`]. Two lists are a usage error.
    pub fn from_lists(
        idle: Option<Vec<u64>>,
        connections: Option<Vec<u64>>,
        size: Option<Vec<u64>>,
    ) -> Result<SweepChoice, BadArgument> {
        let given = [
            (Dimension::Idle, idle),
            (Dimension::Connections, connections),
            (Dimension::Size, size),
        ];
        let mut lists = given
            .iter()
            .filter_map(|(d, v)| v.as_ref().filter(|v| v.len() > 1).map(|v| (*d, v.clone())));
        let (dimension, values) = match (lists.next(), lists.next()) {
            (Some(_), Some(_)) => {
                return Err(BadArgument(
                    "sweep one dimension at a time: give a list to only one of --idle, --connections, --size".into(),
                ))
            }
            (Some(list), None) => list,
            (None, _) => (
                Dimension::Idle,
                given[0]
                    .1
                    .clone()
                    .unwrap_or_else(|| Self::DEFAULT_IDLE.to_vec()),
            ),
        };
        let single = |d: Dimension, default: u64| -> u64 {
            given
                .iter()
                .find(|(g, v)| *g == d && *g != dimension && v.is_some())
                .and_then(|(_, v)| v.as_ref()?.first().copied())
                .unwrap_or(default)
        };
        Ok(SweepChoice {
            dimension,
            values,
            connections: single(Dimension::Connections, 50),
            idle: single(Dimension::Idle, 0),
            size: single(Dimension::Size, 512),
        })
    }
}

/// `sweep`: every model at every value of one dimension.
pub fn sweep(
    plan: &Plan,
    dimension: Dimension,
    values: &[u64],
    out: Option<&Path>,
) -> anyhow::Result<Outcome> {
    if plan.transports.len() > 1 {
        return Err(BadArgument(
            "sweep takes one transport at a time (--transport tcp or unix); compare puts both side by side".into(),
        )
        .into());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(idle: Option<&[u64]>, c: Option<&[u64]>, size: Option<&[u64]>) -> SweepChoice {
        let v = |x: Option<&[u64]>| x.map(<[u64]>::to_vec);
        SweepChoice::from_lists(v(idle), v(c), v(size)).unwrap()
    }

    #[test]
    fn the_dimension_is_the_one_with_several_values() {
        let none = choose(None, None, None);
        assert_eq!(none.dimension, Dimension::Idle);
        assert_eq!(none.values, SweepChoice::DEFAULT_IDLE);
        assert_eq!((none.connections, none.size), (50, 512));

        let c = choose(Some(&[100]), Some(&[1, 10, 100]), None);
        assert_eq!(
            (c.dimension, c.values.as_slice()),
            (Dimension::Connections, &[1, 10, 100][..])
        );
        assert_eq!(c.idle, 100, "a single value sets the shape");

        // `sweep -c 5` sweeps idle at 5 active connections.
        let five = choose(None, Some(&[5]), None);
        assert_eq!((five.dimension, five.connections), (Dimension::Idle, 5));

        let one_idle = choose(Some(&[1000]), None, Some(&[64, 4096]));
        assert_eq!(one_idle.dimension, Dimension::Size);
        assert_eq!(one_idle.idle, 1000);
        assert_eq!(choose(Some(&[7]), None, None).values, [7]);
    }

    #[test]
    fn two_lists_are_a_usage_error() {
        let e = SweepChoice::from_lists(Some(vec![0, 1]), None, Some(vec![64, 512])).unwrap_err();
        assert!(e.0.contains("one dimension at a time"));
    }
}
