//! netlab-loadgen: the load generator behind `loadgen`, as a library so tests and benches can
//! drive it.
//!
//! | module       | what it holds                                                              |
//! |--------------|----------------------------------------------------------------------------|
//! | [`workload`] | what a run is ([`Workload`], [`Protocol`]) and [`Workload::check`]          |
//! | [`engine`]   | many connections from few threads on mio: closed loop, open loop, churn   |
//! |  `engine/`   | its parts: `worker` (with `worker/connect`, `worker/load`), `http_reply`,  |
//! |              | `sock`, `progress`, `barrier`                                              |
//! | [`errors`]   | the error counters by kind; client limits told apart from server faults   |
//! | [`frame`]    | the echo message: header (length, connection id, sequence) and checked payload |
//! | [`report`]   | one run's result: [`RunReport`], its [`report::Status`], percentiles       |
//! | [`rounds`]   | `--rounds N`: medians, min..max spreads, unstable and not-distinguishable marks |
//! | [`measure`]  | [`measure()`]: the engine run with the server sampled at the window's edges |
//! | [`render`]   | the table (comfy-table) and its notes, JSON, CSV                          |
//! | [`page`]     | `index.html`: the whole report on one self-contained page                 |
//! | [`environment`] | the machine a result was measured on, in every report                  |
//! | [`cost`]     | the server's cost from /proc: CPU, context switches, RSS, VmSize, threads, fds |
//! | [`syscalls`] | syscalls per message from perf tracepoints                                 |
//! | [`servers`]  | finding, building, starting (pinned) and stopping the echo servers         |
//! | [`compare`]  | `compare`: every model in turn (rounds, transports), files, charts, page  |
//! | [`sweep`]    | `sweep`: every model at every value of one dimension                      |
//! | [`folder`]   | the report folder: never overwritten, never shared; results.json and .csv |
//! | [`charts`]   | SVG charts with plotters                                                   |
//! | [`commands`] | what `loadgen` does past its flags: one target run, printing, a closed stdout |
//! | [`target`], [`units`] | `HOST:PORT` / `unix:PATH`; `10k`, `2m`, `500ms`                   |

pub mod charts;
pub mod commands;
pub mod compare;
pub mod cost;
pub mod engine;
pub mod environment;
pub mod errors;
pub mod folder;
pub mod frame;
pub mod measure;
pub mod page;
pub mod render;
pub mod report;
pub mod rounds;
pub mod servers;
pub mod sweep;
pub mod syscalls;
pub mod target;
pub mod units;
pub mod workload;

pub use errors::ErrorCounts;
pub use report::{measure, Environment, Format, MeasureOptions, RunReport};
pub use target::Target;
pub use workload::{BadArgument, Protocol, Workload};

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (children inherit it), so
/// thousands of connections fit. Returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}
