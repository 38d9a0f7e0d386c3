//! `trace`: see the crate's documentation (src/lib.rs) and `trace --help`.

use std::io::IsTerminal;

use netlab_core::parse_args;
use netlab_trace::{run, Cli, Terminal};

fn main() {
    let cli: Cli = parse_args();
    let stdout = std::io::stdout();
    let is_terminal = stdout.is_terminal();
    let width = terminal_size::terminal_size_of(&stdout).map(|(w, _)| w.0 as usize);
    let mut input = std::io::stdin().lock();
    let mut output = stdout.lock();
    let mut term = Terminal {
        input: &mut input,
        output: &mut output,
        is_terminal,
        width,
    };
    if let Err(e) = run(&cli, &mut term) {
        eprintln!("trace: error: {e:#}");
        std::process::exit(1);
    }
}
