//! `trace`: see the crate's documentation (src/lib.rs) and `trace --help`.

use std::io::{IsTerminal, Read};

use netlab_core::parse_args;
use netlab_trace::{run, Cli, Terminal};
use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};

fn main() {
    let cli: Cli = parse_args();
    let stdout = std::io::stdout();
    let is_terminal = stdout.is_terminal();
    let width = terminal_size::terminal_size_of(&stdout).map(|(w, _)| w.0 as usize);
    let mut input = std::io::BufReader::with_capacity(1, OneKey::new());
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

/// Standard input, read one key at a time when it is a terminal: for the length of each read
/// only, line editing, echo and signal keys are off (ICANON, ECHO, ISIG), so `q` acts at once
/// and Ctrl-C arrives as a key (the stepper takes it as `q`: it stops the server). Between reads
/// the terminal is as it was, so Ctrl-C during a step interrupts as usual and leaves the
/// terminal sane. Not a terminal: plain reads.
struct OneKey {
    saved: Option<Termios>,
}

impl OneKey {
    fn new() -> OneKey {
        let stdin = std::io::stdin();
        let saved = if stdin.is_terminal() {
            termios::tcgetattr(&stdin).ok()
        } else {
            None
        };
        OneKey { saved }
    }
}

impl Read for OneKey {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let stdin = std::io::stdin();
        let Some(saved) = &self.saved else {
            return stdin.lock().read(buf);
        };
        let mut keys = saved.clone();
        keys.local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG);
        // Without ICANON a read returns after VMIN bytes: one key, no timeout.
        keys.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        keys.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &keys)?;
        let one = buf.len().min(1);
        let n = stdin.lock().read(&mut buf[..one]);
        termios::tcsetattr(&stdin, SetArg::TCSANOW, saved)?;
        n
    }
}
