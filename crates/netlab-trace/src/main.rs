//! `trace`: see the crate's documentation (src/lib.rs) and `trace --help`.

use std::io::IsTerminal;

use netlab_core::parse_args;
use netlab_trace::{run, Cli, Terminal};
use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};

fn main() {
    let cli: Cli = parse_args();
    let stdout = std::io::stdout();
    let is_terminal = stdout.is_terminal();
    let width = terminal_size::terminal_size_of(&stdout).map(|(w, _)| w.0 as usize);
    let keys = OneKeyAtATime::start();
    let mut input = std::io::stdin().lock();
    let mut output = stdout.lock();
    let mut term = Terminal {
        input: &mut input,
        output: &mut output,
        is_terminal,
        width,
    };
    let result = run(&cli, &mut term);
    drop(keys);
    if let Err(e) = result {
        eprintln!("trace: error: {e:#}");
        std::process::exit(1);
    }
}

/// The terminal with line editing (ICANON) and echo off while the stepper runs, so that `q`
/// quits at once instead of waiting for Enter; Ctrl-C still works (ISIG stays on). Put back as
/// it was when dropped. Nothing happens when stdin is not a terminal.
struct OneKeyAtATime {
    saved: Option<Termios>,
}

impl OneKeyAtATime {
    fn start() -> OneKeyAtATime {
        let stdin = std::io::stdin();
        let saved = stdin
            .is_terminal()
            .then(|| termios::tcgetattr(&stdin).ok())
            .flatten();
        if let Some(saved) = &saved {
            let mut keys = saved.clone();
            keys.local_flags
                .remove(LocalFlags::ICANON | LocalFlags::ECHO);
            // Without ICANON a read returns after VMIN bytes: one key, no timeout.
            keys.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
            keys.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
            let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &keys);
        }
        OneKeyAtATime { saved }
    }
}

impl Drop for OneKeyAtATime {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}
