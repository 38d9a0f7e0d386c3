//! One run's result: [`RunReport`] and the figures it holds. How a report is measured lives in
//! [`crate::measure`], how it is printed (table, JSON, CSV) in [`crate::render`], the machine
//! it ran on in [`crate::environment`]; their main items are re-exported here.

use serde::{Deserialize, Serialize};

use crate::cost::ServerCost;
use crate::errors::ErrorCounts;
use crate::syscalls::SyscallReport;
use crate::workload::Workload;

pub use crate::environment::Environment;
pub use crate::measure::{measure, MeasureOptions};
pub use crate::render::{render, table, Format, CSV_HEADER};

/// How a run ended. Serialized as the words the JSON and CSV have always carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Every message came back intact.
    #[serde(rename = "ok")]
    Ok,
    /// Some message failed (counted by kind), or the server stopped badly.
    #[serde(rename = "errors")]
    Errors,
    /// The server could not be started or measured.
    #[serde(rename = "unavailable")]
    Unavailable,
    /// Deliberately not run (the note says why); not a failure.
    #[serde(rename = "skipped")]
    Skipped,
    /// select refused the connections whose fd was >= FD_SETSIZE; the rest carried the load.
    #[serde(rename = "fd limit (FD_SETSIZE)")]
    FdLimit,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Errors => "errors",
            Status::Unavailable => "unavailable",
            Status::Skipped => "skipped",
            Status::FdLimit => "fd limit (FD_SETSIZE)",
        }
    }

    /// Whether the run produced figures (it ran, whatever its errors).
    pub fn measured(self) -> bool {
        !matches!(self, Status::Unavailable | Status::Skipped)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `report.status == "ok"` reads as the JSON does.
impl PartialEq<&str> for Status {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
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
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Percentiles {
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
    pub status: Status,
    pub note: Option<String>,
    pub environment: Environment,
    pub workload: Workload,
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
    /// With `--rounds N` (N > 1): the spread of the headline figures over the rounds, which
    /// then hold the medians.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<crate::rounds::Rounds>,
    /// `--churn`: the lives completed and the TIME_WAIT sockets they left, by side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnReport>,
}

/// What a `--churn` run left behind. The side that closes first keeps the TIME_WAIT socket for
/// 60 s: loadgen closes after reading its echo, so the sockets are the client's, each holding an
/// ephemeral port. Counted from /proc/net/tcp{,6} after the run, less what was there before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChurnReport {
    /// Connections that went through connect, one echo and close.
    pub completed: u64,
    /// TIME_WAIT sockets whose remote port is the server's: the client's side.
    pub time_wait_client: Option<u64>,
    /// TIME_WAIT sockets whose local port is the server's.
    pub time_wait_server: Option<u64>,
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
            status: Status::Unavailable,
            note: Some(why.into()),
            environment: env.clone(),
            workload: workload.clone(),
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
            rounds: None,
            churn: None,
        }
    }

    /// A row for a model deliberately not run (`skipped: why`); not a failure.
    pub fn skipped(model: &str, workload: &Workload, env: &Environment, why: &str) -> RunReport {
        RunReport {
            status: Status::Skipped,
            ..RunReport::unavailable(model, workload, env, why)
        }
    }

    /// Whether this run counts as failed (exit status).
    pub fn failed(&self) -> bool {
        matches!(self.status, Status::Errors | Status::Unavailable)
    }
}

/// How [`Workload`]'s fields that are not plain numbers appear in the JSON: the protocol in
/// words, durations in seconds (`warmup_s`).
pub(crate) mod workload_fields {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::workload::Protocol;

    pub mod seconds {
        use super::*;

        pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_f64(d.as_secs_f64())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            let secs = f64::deserialize(d)?;
            Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
        }
    }

    /// `echo` or `http GET /path` (the Host header is not recorded).
    pub mod protocol {
        use super::*;

        pub fn serialize<S: Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
            match p {
                Protocol::Echo => s.serialize_str("echo"),
                Protocol::Http { path, .. } => s.serialize_str(&format!("http GET {path}")),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
            let text = String::deserialize(d)?;
            match text.strip_prefix("http GET ") {
                Some(path) => Ok(Protocol::Http {
                    host: String::new(),
                    path: path.to_string(),
                }),
                None if text == "echo" => Ok(Protocol::Echo),
                None => Err(serde::de::Error::custom(format!(
                    "unknown protocol {text:?}"
                ))),
            }
        }
    }

    /// The target is not part of the workload record (each report names its own).
    pub fn no_target() -> crate::target::Target {
        crate::target::Target::Tcp(([127, 0, 0, 1], 0).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_serializes_as_its_old_words() {
        for status in [
            Status::Ok,
            Status::Errors,
            Status::Unavailable,
            Status::Skipped,
            Status::FdLimit,
        ] {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);
        }
        assert!(Status::FdLimit == "fd limit (FD_SETSIZE)");
    }

    #[test]
    fn the_workload_record_keeps_its_json_shape() {
        let w = Workload::echo(crate::Target::Unix("/x".into()));
        // The same keys in the same order as the record this replaced, and churn.
        let text = serde_json::to_string(&w).unwrap();
        let keys: Vec<&str> = text
            .split(&['{', ','][..])
            .filter_map(|kv| kv.split_once("\":").map(|(k, _)| k.trim_start_matches('"')))
            .collect();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            keys,
            [
                "protocol",
                "connections",
                "idle",
                "threads",
                "size",
                "pipeline",
                "rate",
                "warmup_s",
                "duration_s",
                "timeout_s",
                "nodelay",
                "connect_rate",
                "churn"
            ]
        );
        assert_eq!(json["protocol"], "echo");
        assert_eq!(json["warmup_s"], 1.0);
        let back: Workload = serde_json::from_value(json).unwrap();
        assert_eq!((back.duration, back.size), (w.duration, w.size));
        let http = Workload {
            protocol: crate::Protocol::Http {
                host: "h".into(),
                path: "/f".into(),
            },
            ..w
        };
        assert_eq!(
            serde_json::to_value(&http).unwrap()["protocol"],
            "http GET /f"
        );
    }
}
