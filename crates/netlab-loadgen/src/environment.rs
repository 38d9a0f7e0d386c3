//! Where a result was measured: kernel, CPU, cores, where client and server ran, the load
//! average. Recorded in every [`crate::RunReport`] so a figure never travels without it.

use serde::{Deserialize, Serialize};

use crate::workload::Workload;

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
        Environment {
            kernel,
            cpu_model,
            cores: crate::servers::online_cores(),
            netlab_version: env!("CARGO_PKG_VERSION").to_string(),
            client_core: None,
            server_core: None,
            workload: workload.describe(),
            load_average: load_average(),
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

    /// `environment: Linux ...; AMD EPYC; 2 cores; netlab 0.1.0; client on core 0, server on
    /// core 1; load average ...`
    pub fn line(&self) -> String {
        let core = |c: Option<usize>| c.map_or("any".into(), |c: usize| c.to_string());
        format!(
            "environment: {}; {}; {} cores; netlab {}; client on core {}, server on core {}; load average {}",
            self.kernel,
            self.cpu_model,
            self.cores,
            self.netlab_version,
            core(self.client_core),
            core(self.server_core),
            self.load_average,
        )
    }
}

/// /proc/loadavg's 1, 5 and 15 minute figures, as one string.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
