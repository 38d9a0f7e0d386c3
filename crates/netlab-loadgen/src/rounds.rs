//! Rounds and spread: a model run `--rounds N` times becomes one row whose headline figures
//! (msg/s, p99, server CPU per message) are the medians of its rounds, with the spread as the
//! min..max of the rounds (the whole range, not an interval estimate: with 3 to 5 rounds there
//! is too little to bootstrap). Two models whose ranges overlap on a figure are marked as not
//! distinguishable on it; a model whose range is wider than [`UNSTABLE_SHARE`] of its median is
//! marked unstable, with the load average, as hyperfine warns of outliers.
//!
//! [`order`] interleaves the rounds (A B C, B C A, C A B, ...) so that no model always runs
//! first or last, nor always after the same neighbour's heat.

use serde::{Deserialize, Serialize};

use crate::report::{RunReport, Status};

/// Spread above this share of the median marks a figure unstable.
pub const UNSTABLE_SHARE: f64 = 0.10;

/// One figure over the rounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The middle round's value (an even count: the mean of the two middle ones).
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Every round's value, in the order the rounds ran.
    pub values: Vec<f64>,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            values: values.to_vec(),
        })
    }

    /// (max - min) / median.
    pub fn share(&self) -> f64 {
        if self.median.abs() < f64::EPSILON {
            0.0
        } else {
            (self.max - self.min) / self.median.abs()
        }
    }

    pub fn overlaps(&self, other: &Spread) -> bool {
        self.min <= other.max && other.min <= self.max
    }
}

/// The figures a row carries a spread for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    MsgsPerS,
    P99Us,
    ServerCpuUsPerMsg,
}

impl Figure {
    pub const ALL: [Figure; 3] = [Figure::MsgsPerS, Figure::P99Us, Figure::ServerCpuUsPerMsg];

    /// The name the table uses.
    pub fn label(self) -> &'static str {
        match self {
            Figure::MsgsPerS => "msg/s",
            Figure::P99Us => "p99",
            Figure::ServerCpuUsPerMsg => "srv us/msg",
        }
    }

    fn of(self, r: &RunReport) -> Option<f64> {
        match self {
            Figure::MsgsPerS => Some(r.msgs_per_s),
            Figure::P99Us => Some(r.latency.p99_us),
            Figure::ServerCpuUsPerMsg => r.server.as_ref().map(|s| s.cpu_us_per_msg),
        }
    }
}

/// A row's rounds: how many, each headline figure's spread, and what the spreads say.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rounds {
    pub count: usize,
    /// What the ranges are: `min..max of the rounds`.
    pub spread_is: String,
    pub msgs_per_s: Option<Spread>,
    pub p99_us: Option<Spread>,
    pub server_cpu_us_per_msg: Option<Spread>,
    /// Figures whose range is wider than 10% of their median.
    pub unstable: Vec<Figure>,
    /// /proc/loadavg when the last round ended.
    pub load_average: String,
    /// Per figure, the other rows whose range overlaps this one's.
    pub not_distinguishable: NotDistinguishable,
}

/// The rows a row cannot be told apart from, figure by figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NotDistinguishable {
    pub msgs_per_s: Vec<String>,
    pub p99_us: Vec<String>,
    pub server_cpu_us_per_msg: Vec<String>,
}

impl NotDistinguishable {
    pub fn on(&self, figure: Figure) -> &Vec<String> {
        match figure {
            Figure::MsgsPerS => &self.msgs_per_s,
            Figure::P99Us => &self.p99_us,
            Figure::ServerCpuUsPerMsg => &self.server_cpu_us_per_msg,
        }
    }

    fn on_mut(&mut self, figure: Figure) -> &mut Vec<String> {
        match figure {
            Figure::MsgsPerS => &mut self.msgs_per_s,
            Figure::P99Us => &mut self.p99_us,
            Figure::ServerCpuUsPerMsg => &mut self.server_cpu_us_per_msg,
        }
    }
}

impl Rounds {
    pub fn spread(&self, figure: Figure) -> Option<&Spread> {
        match figure {
            Figure::MsgsPerS => self.msgs_per_s.as_ref(),
            Figure::P99Us => self.p99_us.as_ref(),
            Figure::ServerCpuUsPerMsg => self.server_cpu_us_per_msg.as_ref(),
        }
    }
}

/// The order of round `round` (0-based) over `n` items: a rotation, so that each item runs
/// in every position once per `n` rounds.
pub fn order(n: usize, round: usize) -> Vec<usize> {
    (0..n).map(|i| (i + round) % n.max(1)).collect()
}

/// One row from a model's rounds (in the order they ran). The headline figures become the
/// medians; every other figure comes from the round whose msg/s is nearest the median. Errors
/// are summed over all rounds and the worst status wins, so no round's failure is hidden.
pub fn combine(mut rounds: Vec<RunReport>, load_average: String) -> RunReport {
    assert!(!rounds.is_empty(), "combine needs at least one round");
    if let Some(i) = rounds.iter().position(|r| !r.status.measured()) {
        // A server that could not run once is reported as such: its other rounds' figures
        // would stand for a model that was not measured every time.
        return rounds.swap_remove(i);
    }
    let count = rounds.len();
    let values = |f: Figure| -> Vec<f64> { rounds.iter().filter_map(|r| f.of(r)).collect() };
    let msgs = Spread::of(&values(Figure::MsgsPerS));
    let p99 = Spread::of(&values(Figure::P99Us));
    let cpu = if rounds.iter().all(|r| r.server.is_some()) {
        Spread::of(&values(Figure::ServerCpuUsPerMsg))
    } else {
        None
    };
    let median_msgs = msgs.as_ref().map_or(0.0, |s| s.median);
    let middle = (0..count)
        .min_by(|&a, &b| {
            let d = |i: usize| (rounds[i].msgs_per_s - median_msgs).abs();
            d(a).total_cmp(&d(b))
        })
        .unwrap_or(0);
    let mut errors = crate::ErrorCounts::default();
    let mut examples = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut status = Status::Ok;
    for r in &rounds {
        errors.merge(&r.errors);
        examples.extend(r.error_examples.iter().cloned());
        if let Some(n) = &r.note {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
        status = match (status, r.status) {
            (Status::Errors, _) | (_, Status::Errors) => Status::Errors,
            (Status::FdLimit, _) | (_, Status::FdLimit) => Status::FdLimit,
            _ => Status::Ok,
        };
    }
    let mut row = rounds.swap_remove(middle);
    row.status = status;
    row.errors = errors;
    examples.truncate(10);
    row.error_examples = examples;
    row.note = (!notes.is_empty()).then(|| notes.join("; "));
    if let Some(s) = &msgs {
        row.msgs_per_s = s.median;
        // MB/s follows msg/s: same messages, same size.
        if row.messages > 0 {
            row.mb_per_s = row.mb_per_s / (row.messages as f64 / row.window_s) * s.median;
        }
    }
    if let Some(s) = &p99 {
        row.latency.p99_us = s.median;
    }
    if let (Some(s), Some(server)) = (&cpu, row.server.as_mut()) {
        // Keep the middle round's user/system proportion on the median total.
        let total = server.cpu_us_per_msg;
        if total > 0.0 && server.cpu_user_us_per_msg.is_finite() {
            server.cpu_user_us_per_msg *= s.median / total;
            server.cpu_system_us_per_msg *= s.median / total;
        }
        server.cpu_us_per_msg = s.median;
    }
    let mut unstable = Vec::new();
    for (figure, spread) in [
        (Figure::MsgsPerS, &msgs),
        (Figure::P99Us, &p99),
        (Figure::ServerCpuUsPerMsg, &cpu),
    ] {
        if spread.as_ref().is_some_and(|s| s.share() > UNSTABLE_SHARE) {
            unstable.push(figure);
        }
    }
    row.rounds = Some(Rounds {
        count,
        spread_is: "min..max of the rounds".into(),
        msgs_per_s: msgs,
        p99_us: p99,
        server_cpu_us_per_msg: cpu,
        unstable,
        load_average,
        not_distinguishable: NotDistinguishable::default(),
    });
    row
}

/// Marks, on every row with rounds, which other rows' ranges overlap its own, per figure (a
/// sweep calls it once per swept value).
pub fn mark_overlaps(rows: &mut [RunReport]) {
    for figure in Figure::ALL {
        let spreads: Vec<Option<Spread>> = rows
            .iter()
            .map(|r| r.rounds.as_ref().and_then(|x| x.spread(figure)).cloned())
            .collect();
        for i in 0..rows.len() {
            let Some(mine) = &spreads[i] else { continue };
            let others: Vec<String> = (0..rows.len())
                .filter(|&j| j != i)
                .filter(|&j| spreads[j].as_ref().is_some_and(|s| s.overlaps(mine)))
                .map(|j| rows[j].model.clone())
                .collect();
            if let Some(rounds) = rows[i].rounds.as_mut() {
                *rounds.not_distinguishable.on_mut(figure) = others;
            }
        }
    }
}

/// The notes a table of rows with rounds needs: unstable rows, and the pairs that cannot be
/// told apart.
pub fn notes(rows: &[RunReport]) -> Vec<String> {
    let mut notes = Vec::new();
    let Some(first) = rows.iter().find_map(|r| r.rounds.as_ref()) else {
        return notes;
    };
    notes.push(format!(
        "median of {} interleaved rounds; [a..b] is the spread, {}; ~ marks a figure whose range overlaps another row's: those rows are not distinguishable on it",
        first.count, first.spread_is
    ));
    for r in rows {
        let Some(rounds) = &r.rounds else { continue };
        if !rounds.unstable.is_empty() {
            let parts: Vec<String> = rounds
                .unstable
                .iter()
                .filter_map(|f| {
                    let s = rounds.spread(*f)?;
                    Some(format!("{} spread {:.0}%", f.label(), s.share() * 100.0))
                })
                .collect();
            notes.push(format!(
                "{}: unstable: {} of the median over {} rounds (above {:.0}%); load average {}: rerun on a quieter machine or with more --rounds",
                r.model,
                parts.join(", "),
                rounds.count,
                UNSTABLE_SHARE * 100.0,
                rounds.load_average
            ));
        }
    }
    for figure in Figure::ALL {
        let mut pairs = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let Some(rounds) = &r.rounds else { continue };
            for other in rounds.not_distinguishable.on(figure) {
                let j = rows.iter().position(|x| &x.model == other).unwrap_or(0);
                if j > i {
                    pairs.push(format!("{} ~ {}", r.model, other));
                }
            }
        }
        if !pairs.is_empty() {
            notes.push(format!(
                "not distinguishable on {}: {}",
                figure.label(),
                pairs.join(", ")
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Environment, Target, Workload};

    fn round(model: &str, msgs: f64, p99: f64) -> RunReport {
        let w = Workload::echo(Target::Unix("/x".into()));
        let mut r = RunReport::unavailable(model, &w, &Environment::default(), "");
        r.status = Status::Ok;
        r.note = None;
        r.window_s = 1.0;
        r.messages = msgs as u64;
        r.msgs_per_s = msgs;
        r.mb_per_s = msgs * 512.0 / 1e6;
        r.latency.p99_us = p99;
        r
    }

    #[test]
    fn rounds_rotate() {
        assert_eq!(order(3, 0), [0, 1, 2]);
        assert_eq!(order(3, 1), [1, 2, 0]);
        assert_eq!(order(3, 2), [2, 0, 1]);
        assert_eq!(order(3, 3), [0, 1, 2]);
    }

    #[test]
    fn medians_and_spreads() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.values, [3.0, 1.0, 2.0]);
        assert_eq!(Spread::of(&[1.0, 4.0]).unwrap().median, 2.5);
        assert!(Spread::of(&[]).is_none());
        let row = combine(
            vec![
                round("a", 100.0, 50.0),
                round("a", 130.0, 40.0),
                round("a", 101.0, 45.0),
            ],
            "1.0 1.0 1.0".into(),
        );
        let rounds = row.rounds.as_ref().unwrap();
        assert_eq!(rounds.count, 3);
        assert_eq!(row.msgs_per_s, 101.0);
        assert_eq!(row.latency.p99_us, 45.0);
        assert_eq!(row.messages, 101, "other figures from the median round");
        // msg/s spread 29% and p99 22% are unstable; no server, so no CPU spread.
        assert_eq!(rounds.unstable, [Figure::MsgsPerS, Figure::P99Us]);
        assert!(rounds.server_cpu_us_per_msg.is_none());
    }

    #[test]
    fn a_failed_round_fails_the_row() {
        let mut bad = round("a", 100.0, 50.0);
        bad.status = Status::Errors;
        bad.errors.timeout = 2;
        let row = combine(
            vec![round("a", 100.0, 50.0), bad, round("a", 100.0, 50.0)],
            String::new(),
        );
        assert_eq!(row.status, Status::Errors);
        assert_eq!(row.errors.timeout, 2);
    }

    #[test]
    fn overlapping_ranges_are_not_distinguishable() {
        let a = combine(
            vec![round("a", 100.0, 10.0), round("a", 110.0, 10.0)],
            String::new(),
        );
        let b = combine(
            vec![round("b", 105.0, 20.0), round("b", 120.0, 21.0)],
            String::new(),
        );
        let c = combine(
            vec![round("c", 200.0, 10.0), round("c", 210.0, 11.0)],
            String::new(),
        );
        let mut rows = vec![a, b, c];
        mark_overlaps(&mut rows);
        let nd = |i: usize| rows[i].rounds.as_ref().unwrap().not_distinguishable.clone();
        assert_eq!(nd(0).msgs_per_s, ["b"]);
        assert_eq!(nd(1).msgs_per_s, ["a"]);
        assert!(nd(2).msgs_per_s.is_empty());
        assert_eq!(nd(0).p99_us, ["c"]);
        assert!(nd(1).p99_us.is_empty());
        let text = notes(&rows).join("\n");
        assert!(
            text.contains("not distinguishable on msg/s: a ~ b"),
            "{text}"
        );
        assert!(text.contains("not distinguishable on p99: a ~ c"), "{text}");
    }
}
