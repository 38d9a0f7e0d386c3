//! What a run is: the [`Workload`] (target, protocol, connections, message size, pacing, how
//! long), its [`Workload::describe`] line, and [`Workload::check`], which refuses a workload the
//! client cannot carry before anything starts, as a [`BadArgument`] (the `loadgen` binary exits
//! 2 for those).

use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::frame::HEADER;
use crate::target::Target;

/// The largest echo message: 64 MiB.
pub const MAX_SIZE: usize = 64 << 20;

/// What is spoken on each connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Framed echo messages, checked byte for byte.
    Echo,
    /// HTTP/1.1 keep-alive `GET path`; a reply must be `200` with exactly `Content-Length`
    /// body bytes.
    Http { host: String, path: String },
}

/// Everything that defines a run. In a report's JSON it is the `workload` record: the target is
/// left out (the report names it), the protocol is a word, durations are seconds (`warmup_s`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    #[serde(skip, default = "crate::report::workload_fields::no_target")]
    pub target: Target,
    #[serde(with = "crate::report::workload_fields::protocol")]
    pub protocol: Protocol,
    /// Connections that carry messages.
    pub connections: usize,
    /// Extra connections held open and silent.
    pub idle: usize,
    pub threads: usize,
    /// Bytes per echo message, header included.
    pub size: usize,
    /// Messages in flight per connection (closed loop).
    pub pipeline: usize,
    /// Open loop: messages per second in total.
    pub rate: Option<f64>,
    #[serde(rename = "warmup_s", with = "crate::report::workload_fields::seconds")]
    pub warmup: Duration,
    #[serde(
        rename = "duration_s",
        with = "crate::report::workload_fields::seconds"
    )]
    pub duration: Duration,
    /// A connection with messages outstanding and no byte back for this long has timed out.
    #[serde(rename = "timeout_s", with = "crate::report::workload_fields::seconds")]
    pub timeout: Duration,
    /// TCP_NODELAY on every connection (Nagle off).
    pub nodelay: bool,
    /// New connections per second (all threads together); `None` is as fast as handshakes go.
    pub connect_rate: Option<f64>,
    /// Show a live progress line (only ever on a terminal).
    #[serde(skip)]
    pub progress: bool,
    /// Connection churn: each active connection connects, echoes one message, closes, and
    /// starts again; a "message" is then one whole connection, and its latency runs from
    /// `connect` to `close`.
    #[serde(default)]
    pub churn: bool,
}

impl Workload {
    /// An echo workload against `target` with the defaults of the `loadgen` command.
    pub fn echo(target: Target) -> Workload {
        Workload {
            target,
            protocol: Protocol::Echo,
            connections: 50,
            idle: 0,
            threads: 1,
            size: 512,
            pipeline: 1,
            rate: None,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            nodelay: true,
            connect_rate: None,
            progress: false,
            churn: false,
        }
    }

    /// One line: `50 connections (+100 idle), 512-byte messages, pipeline 1, 5s after 1s warmup`.
    pub fn describe(&self) -> String {
        self.describe_varying(None)
    }

    /// [`Workload::describe`] without the figure named `varying` (`connections`, `idle` or
    /// `size`), for a sweep that varies it.
    pub fn describe_varying(&self, varying: Option<&str>) -> String {
        let mut parts = Vec::new();
        if varying != Some("connections") {
            let s = if self.connections == 1 { "" } else { "s" };
            parts.push(format!("{} connection{s}", self.connections));
        }
        if self.idle > 0 && varying != Some("idle") {
            parts.push(format!("+{} idle", self.idle));
        }
        match &self.protocol {
            Protocol::Echo if self.churn => parts.push(if varying == Some("size") {
                "churn (connect, one echo, close)".to_string()
            } else {
                format!("churn (connect, one {}-byte echo, close)", self.size)
            }),
            Protocol::Echo if varying != Some("size") => {
                parts.push(format!("{}-byte messages", self.size))
            }
            Protocol::Echo => {}
            Protocol::Http { path, .. } => parts.push(format!("GET {path}")),
        }
        let mut text = parts.join(", ");
        match self.rate {
            Some(rate) => text += &format!(", open loop {} msg/s", crate::units::human(rate)),
            None if self.churn => {}
            None => text += &format!(", pipeline {}", self.pipeline),
        }
        text += &format!(
            ", {} thread{}, {:.3}s after {:.3}s warmup",
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.duration.as_secs_f64(),
            self.warmup.as_secs_f64()
        );
        if !self.nodelay {
            text += ", Nagle on";
        }
        text
    }
}

/// A workload that cannot be run as asked: a usage error (the `loadgen` binary exits 2), as
/// opposed to a run that went wrong.
#[derive(Debug)]
pub struct BadArgument(pub String);

impl std::fmt::Display for BadArgument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadArgument {}

impl Workload {
    /// Refuses a run the client cannot carry, with the limit named, before anything connects
    /// (and before a comparison starts any server). Values no run can use (`-c 0`, `--size 1`)
    /// are a [`BadArgument`]; a workload beyond the client's own limits (descriptors,
    /// ephemeral ports) is a plain error that says "client limit".
    pub fn check(&self) -> anyhow::Result<()> {
        let bad = |text: String| Err(BadArgument(text).into());
        if self.connections == 0 {
            return bad("need at least one active connection (-c)".into());
        }
        if self.protocol == Protocol::Echo && self.size < HEADER {
            return bad(format!("--size must be at least {HEADER} bytes (the message header: length, connection id, sequence number)"));
        }
        // The client holds the pattern (a message's size) and each connection's unsent
        // messages: past this a typo (`--size 4G`) would abort on a failed allocation.
        if self.protocol == Protocol::Echo && self.size > MAX_SIZE {
            return bad(format!("--size must be at most {} MiB", MAX_SIZE >> 20));
        }
        if self.pipeline == 0 {
            return bad("--pipeline must be at least 1".into());
        }
        if self.duration.is_zero() {
            return bad("--duration must be more than 0".into());
        }
        // NaN and infinity pass `r <= 0.0`: an infinite rate would send without pause.
        if matches!(self.rate, Some(r) if !(r > 0.0 && r.is_finite())) {
            return bad("--rate must be a number more than 0".into());
        }
        if matches!(self.connect_rate, Some(r) if !(r > 0.0 && r.is_finite())) {
            return bad("--connect-rate must be a number more than 0 (leave it out for as fast as handshakes go)".into());
        }
        if self.churn {
            if self.protocol != Protocol::Echo {
                return bad(
                    "--churn is an echo workload; loadgen http keeps its connections".into(),
                );
            }
            if self.rate.is_some() || self.pipeline != 1 {
                return bad("--churn sends one message per connection, one connection after another: leave out --rate and --pipeline".into());
            }
        }
        let total = self.connections + self.idle;
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .unwrap_or((u64::MAX, u64::MAX));
        let needed = total as u64 + 64;
        if needed > soft {
            bail!(
                "client limit: {total} connections need about {needed} descriptors but this \
                 process may open {soft} (RLIMIT_NOFILE); raise it with `ulimit -n` (this is the \
                 client's limit, not the server's)"
            );
        }
        if let Target::Tcp(addr) = &self.target {
            if let Some((low, high)) = ephemeral_port_range() {
                let ports = (high - low + 1) as usize;
                if total > ports {
                    bail!(
                        "client limit: {total} connections to one address need {total} ephemeral \
                         ports but net.ipv4.ip_local_port_range gives {ports} ({low}-{high}); \
                         connections to {addr} would fail with EADDRNOTAVAIL"
                    );
                }
            }
        }
        Ok(())
    }
}

fn ephemeral_port_range() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse().ok());
    Some((parts.next()??, parts.next()??))
}
