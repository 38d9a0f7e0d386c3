//! # netlab-trace: step through a server's strace output, one client action at a time
//!
//! `trace epoll-et` runs the model's server under `strace -f`, drives a scripted client one
//! action per step (connect, send a line, read the echo, a message larger than the buffers,
//! ...), and after each action prints exactly the server calls that action caused, each with
//! the lab's note on what it means for this model, and a one-line summary.
//!
//! - [`models`]: the table of models (adding a server is one entry);
//! - [`steps`]: the client actions and the named scenarios;
//! - [`session`]: one model under strace, a step at a time, ended by [`idle`] (the kernel's
//!   word that every server thread sleeps in a wait) and the trace file at rest;
//! - [`strace`]: reading strace's output as it grows; [`lines`]: folding it for the reader;
//! - [`notes`]: the labs' `trace-notes.toml`; [`render`]: text, colour, two columns.
//!
//! [`run`] is the whole program; `main` only hands it the terminal.

pub mod client;
pub mod idle;
pub mod lines;
pub mod models;
pub mod notes;
pub mod render;
pub mod session;
pub mod steps;
pub mod strace;

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};

use models::TraceModel;
use session::{Options, Session, Step};

/// Step through a server's syscalls one client action at a time, with notes.
///
/// On a terminal, Enter runs the next step and q quits (and stops the server); otherwise every
/// step runs without pauses, as with --all.
#[derive(Parser, Debug)]
#[command(name = "trace", version)]
pub struct Cli {
    /// One model, or two to see the same steps side by side (see --list).
    #[arg(value_name = "MODEL")]
    pub models: Vec<String>,

    /// Run every step without pausing.
    #[arg(long)]
    pub all: bool,

    /// Which steps (see --list).
    #[arg(long, default_value = "all")]
    pub scenario: String,

    /// List the models and scenarios, and exit.
    #[arg(long)]
    pub list: bool,

    /// text for people, json for programs (steps as data; implies --all).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Two models: columns, one after the other, or columns when the terminal is wide enough.
    #[arg(long, value_enum, default_value_t = Layout::Auto)]
    pub layout: Layout,

    /// Time stamps on every line (strace -tt).
    #[arg(long)]
    pub tt: bool,

    /// Where the server binaries are (default: next to this one, built first when run from the
    /// workspace).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    Auto,
    Columns,
    Sequential,
}

/// Width of one column; two columns need twice this plus the separator.
const COLUMN: usize = 78;

/// Where the program's input and output go, and what they are.
pub struct Terminal<'a> {
    pub input: &'a mut dyn BufRead,
    pub output: &'a mut dyn Write,
    /// Output is a terminal: pause between steps, use colour.
    pub is_terminal: bool,
    pub width: Option<usize>,
}

fn bin_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    netlab_loadgen::servers::locate_servers(cli.bin_dir.as_deref(), cli.bin_dir.is_none())
}

fn list(term: &mut Terminal, cli: &Cli) -> anyhow::Result<()> {
    let dir = match &cli.bin_dir {
        Some(dir) => Some(dir.clone()),
        None => netlab_loadgen::servers::own_profile_dir(),
    };
    writeln!(term.output, "models:")?;
    let about_width = models::MODELS
        .iter()
        .map(|m| m.about.len())
        .max()
        .unwrap_or(0);
    for m in models::MODELS {
        let built = dir.as_ref().is_some_and(|d| d.join(m.bin).is_file());
        let flags = if m.args.is_empty() {
            String::new()
        } else {
            format!(" {}", m.args.join(" "))
        };
        writeln!(
            term.output,
            "  {:<15} {:<about_width$} {}{flags}{}",
            m.name,
            m.about,
            m.bin,
            if built { "" } else { " (not built)" }
        )?;
    }
    writeln!(term.output, "scenarios (--scenario):")?;
    for s in steps::SCENARIOS {
        let ids: Vec<&str> = s.steps.iter().map(|a| a.id()).collect();
        let kind = match s.protocol {
            models::Protocol::Echo => "echo",
            models::Protocol::Http => "http",
        };
        writeln!(
            term.output,
            "  {:<8} {kind:<5} {}: {}",
            s.name,
            s.about,
            ids.join(", ")
        )?;
    }
    Ok(())
}

/// Pauses before a step; false when the user quits (q, or end of input).
fn wait_for_enter(term: &mut Terminal, next: &str) -> anyhow::Result<bool> {
    let prompt = format!("next: {next}   [Enter] run it, [q] quit ");
    if term.is_terminal {
        write!(term.output, "\x1b[1m{prompt}\x1b[0m")?;
    } else {
        write!(term.output, "{prompt}")?;
    }
    term.output.flush()?;
    // One key at a time: main.rs turns the terminal's line editing off for the read, so `q` acts
    // at once, and Ctrl-C (0x03) or Ctrl-D (0x04) arrive as keys that quit too (with line
    // editing on, as through a pipe, `q` then Enter does the same). Other keys are ignored
    // rather than taken as Enter.
    loop {
        let mut key = [0u8; 1];
        if term.input.read(&mut key)? == 0 {
            writeln!(term.output)?;
            return Ok(false);
        }
        match key[0] {
            b'\n' | b'\r' => {
                writeln!(term.output)?; // the key is not echoed: end the prompt's line
                return Ok(true);
            }
            b'q' | b'Q' | 0x03 | 0x04 => {
                writeln!(term.output)?;
                return Ok(false);
            }
            _ => {}
        }
    }
}

/// The whole program: parse nothing, run everything. Errors come back as one message.
pub fn run(cli: &Cli, term: &mut Terminal) -> anyhow::Result<()> {
    if cli.list {
        return list(term, cli);
    }
    let chosen: Vec<&'static TraceModel> = cli
        .models
        .iter()
        .map(|name| {
            models::find(name).with_context(|| {
                let known: Vec<&str> = models::MODELS.iter().map(|m| m.name).collect();
                format!("unknown model '{name}' (known: {})", known.join(", "))
            })
        })
        .collect::<anyhow::Result<_>>()?;
    if chosen.is_empty() || chosen.len() > 2 {
        bail!("name one model, or two to compare (trace --list shows them)");
    }
    let protocol = chosen[0].protocol;
    if chosen.iter().any(|m| m.protocol != protocol) {
        bail!(
            "{} and {} speak different protocols: their steps differ",
            chosen[0].name,
            chosen[1].name
        );
    }
    let scenario = steps::scenario(&cli.scenario, protocol).with_context(|| {
        let names: Vec<&str> = steps::SCENARIOS
            .iter()
            .filter(|s| s.protocol == protocol)
            .map(|s| s.name)
            .collect();
        format!(
            "unknown scenario '{}' for {} (known: {})",
            cli.scenario,
            chosen[0].name,
            names.join(", ")
        )
    })?;
    if strace::find_strace().is_none() {
        bail!("strace is not installed: run scripts/setup.sh (or apt-get install strace)");
    }
    let dir = bin_dir(cli)?;
    for m in &chosen {
        if !dir.join(m.bin).is_file() {
            bail!(
                "{}: {} is not built (nothing at {})",
                m.name,
                m.bin,
                dir.join(m.bin).display()
            );
        }
    }
    let json = cli.format == Format::Json;
    let pausing = term.is_terminal && !cli.all && !json;
    let colour = term.is_terminal && !json;
    let columns = chosen.len() == 2
        && match cli.layout {
            Layout::Columns => true,
            Layout::Sequential => false,
            Layout::Auto => term.width.is_some_and(|w| w >= 2 * COLUMN + 3),
        };
    let options = Options { timestamps: cli.tt };
    let total = scenario.steps.len();
    let mut sessions: Vec<Session> = Vec::new();
    let mut all_steps: Vec<Vec<Step>> = vec![Vec::new(); chosen.len()];
    for (index, action) in scenario.steps.iter().enumerate() {
        if pausing && !wait_for_enter(term, action.words())? {
            return Ok(()); // dropping the sessions stops the servers
        }
        let mut this: Vec<Step> = Vec::new();
        for (i, model) in chosen.iter().enumerate() {
            let step = if index == 0 {
                let (session, step) = Session::start(model, &dir, options)
                    .with_context(|| format!("{}: start", model.name))?;
                sessions.push(session);
                step
            } else {
                sessions[i]
                    .run(*action)
                    .with_context(|| format!("{}: step {}", model.name, action.id()))?
            };
            this.push(step);
        }
        if !json {
            let text = if columns {
                render::columns(
                    [chosen[0].name, chosen[1].name],
                    [&this[0], &this[1]],
                    index + 1,
                    total,
                    term.width.map_or(COLUMN, |w| (w - 3) / 2),
                    colour,
                )
            } else {
                chosen
                    .iter()
                    .zip(&this)
                    .map(|(m, s)| render::step_text(m.name, index + 1, total, s, colour))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            writeln!(term.output, "{text}")?;
            term.output.flush()?;
        }
        for (i, step) in this.into_iter().enumerate() {
            all_steps[i].push(step);
        }
    }
    if json {
        let models: Vec<serde_json::Value> = chosen
            .iter()
            .zip(all_steps)
            .map(|(m, steps)| serde_json::json!({"model": m.name, "bin": m.bin, "args": m.args, "steps": steps}))
            .collect();
        let doc = serde_json::json!({"scenario": scenario.name, "models": models});
        writeln!(term.output, "{}", serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}
