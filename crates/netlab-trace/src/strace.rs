//! strace's output, as it grows: the server runs under `strace -f -o FILE`, and this module
//! reads FILE from where it left off, joins each `<unfinished ...>` call with its
//! `<... resumed>` half, and keeps, per thread, the call strace has begun printing but not
//! finished (the wait the thread sleeps in).
//!
//! strace writes a call's name and first arguments when the thread enters it and the rest when
//! it returns. A call that blocks while no other thread runs is left as a line without its
//! newline (`1234 epoll_wait(9, `); if another thread's call comes in between, strace ends the
//! first with ` <unfinished ...>` and later prints `1234 <... epoll_wait resumed>...) = 1`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One finished event in the trace: a syscall with its result, a signal, or an exit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Call {
    /// The thread (or process) that made it, as strace prints it.
    pub tid: i32,
    /// `-tt` time stamp, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Syscall name; `--- SIGUSR1` is `SIGUSR1`, `+++ exited` is `exit`.
    pub name: String,
    pub kind: Kind,
    /// The call as strace shows it, without pid and time: `recvfrom(8, "hello\n", ...) = 6`.
    pub text: String,
    /// What follows ` = `: `6`, `-1 EAGAIN (Resource temporarily unavailable)`; empty for
    /// signals and exits.
    pub result: String,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Syscall,
    Signal,
    Exit,
}

impl Call {
    /// The number a successful call returned (`= 6`), if it returned one.
    pub fn returned(&self) -> Option<i64> {
        let first = self.result.split_whitespace().next()?;
        first.parse().ok().filter(|n: &i64| *n >= 0)
    }

    /// The errno name of a failed call (`EAGAIN`), if it failed.
    pub fn errno(&self) -> Option<&str> {
        let mut words = self.result.split_whitespace();
        match (words.next(), words.next()) {
            (Some("-1" | "?"), Some(e)) if e.starts_with('E') => Some(e),
            _ => None,
        }
    }

    /// The first argument when it is a number: the fd of most socket calls.
    pub fn first_fd(&self) -> Option<i32> {
        let args = self.text.split_once('(')?.1;
        let first = args.split([',', ')']).next()?.trim();
        first.parse().ok()
    }
}

/// The trace file, read as it grows.
pub struct TraceFile {
    path: PathBuf,
    file: Option<File>,
    /// Bytes read so far, complete lines only.
    offset: u64,
    /// The text after the last newline: a call whose entry strace printed and whose exit it has
    /// not (yet).
    tail: String,
    /// `<unfinished ...>` halves waiting for their `<... resumed>`, per thread.
    unfinished: HashMap<i32, String>,
    /// Pids and tids seen so far (and children a clone returned): the server's tree.
    pub tids: Vec<i32>,
}

impl TraceFile {
    pub fn new(path: &Path) -> TraceFile {
        TraceFile {
            path: path.to_path_buf(),
            file: None,
            offset: 0,
            tail: String::new(),
            unfinished: HashMap::new(),
            tids: Vec::new(),
        }
    }

    /// The file's size now (0 before strace created it).
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Reads what was appended since the last call and returns the finished events in order.
    pub fn read_new(&mut self) -> Vec<Call> {
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        let Some(file) = self.file.as_mut() else {
            return Vec::new();
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return Vec::new();
        }
        let Some(last_newline) = bytes.iter().rposition(|&b| b == b'\n') else {
            self.tail = String::from_utf8_lossy(&bytes).into_owned();
            return Vec::new();
        };
        self.offset += last_newline as u64 + 1;
        self.tail = String::from_utf8_lossy(&bytes[last_newline + 1..]).into_owned();
        let text = String::from_utf8_lossy(&bytes[..last_newline]).into_owned();
        let mut calls = Vec::new();
        for line in text.lines() {
            if let Some(call) = self.parse_line(line) {
                calls.push(call);
            }
        }
        calls
    }

    /// Per thread, the name of the call it is inside, as far as strace has printed: an
    /// `<unfinished ...>` entry, or the entry on the last, unterminated line.
    pub fn pending(&self) -> HashMap<i32, String> {
        let mut pending: HashMap<i32, String> = self
            .unfinished
            .iter()
            .filter_map(|(tid, entry)| Some((*tid, call_name(entry)?.to_string())))
            .collect();
        if let Some((tid, rest)) = split_tid(&self.tail) {
            let rest = strip_time(rest).1;
            if let Some(name) = call_name(rest) {
                pending.insert(tid, name.to_string());
            }
        }
        pending
    }

    /// Each pending call's text so far (`epoll_wait(9, `), for the "now sleeps in" summary.
    pub fn pending_text(&self) -> Vec<(i32, String)> {
        let mut out: Vec<(i32, String)> = self
            .unfinished
            .iter()
            .map(|(tid, entry)| (*tid, entry.clone()))
            .collect();
        if let Some((tid, rest)) = split_tid(&self.tail) {
            out.retain(|(t, _)| *t != tid);
            out.push((tid, strip_time(rest).1.to_string()));
        }
        out.sort();
        out
    }

    fn note_tid(&mut self, tid: i32) {
        if !self.tids.contains(&tid) {
            self.tids.push(tid);
        }
    }

    fn parse_line(&mut self, line: &str) -> Option<Call> {
        let (tid, rest) = split_tid(line)?;
        self.note_tid(tid);
        let (time, rest) = strip_time(rest);
        let time = time.map(str::to_string);
        if let Some(signal) = rest.strip_prefix("--- ") {
            let name = signal.split_whitespace().next().unwrap_or("signal");
            return Some(Call {
                tid,
                time,
                name: name.to_string(),
                kind: Kind::Signal,
                text: rest.to_string(),
                result: String::new(),
            });
        }
        if rest.starts_with("+++ ") {
            self.unfinished.remove(&tid);
            return Some(Call {
                tid,
                time,
                name: "exit".into(),
                kind: Kind::Exit,
                text: rest.to_string(),
                result: String::new(),
            });
        }
        if let Some(entry) = rest.strip_suffix(" <unfinished ...>") {
            self.unfinished.insert(tid, entry.to_string());
            return None;
        }
        let text = match rest.strip_prefix("<... ") {
            Some(resumed) => {
                let (_, after) = resumed.split_once(" resumed>")?;
                let entry = self.unfinished.remove(&tid).unwrap_or_default();
                format!("{entry}{after}")
            }
            None => rest.to_string(),
        };
        let name = call_name(&text)?.to_string();
        let result = split_result(&text).map(str::to_string).unwrap_or_default();
        let call = Call {
            tid,
            time,
            name,
            kind: Kind::Syscall,
            text: tidy_padding(&text),
            result,
        };
        // A new process or thread: its pid comes back from clone in the parent.
        if matches!(call.name.as_str(), "clone" | "clone3" | "fork" | "vfork") {
            if let Some(child) = call.returned().filter(|&n| n > 0) {
                self.note_tid(child as i32);
            }
        }
        Some(call)
    }
}

/// `1234 rest` -> (1234, rest).
fn split_tid(line: &str) -> Option<(i32, &str)> {
    let (tid, rest) = line.split_once(' ')?;
    Some((tid.parse().ok()?, rest.trim_start()))
}

/// `02:11:14.123456 rest` -> (Some(time), rest).
fn strip_time(rest: &str) -> (Option<&str>, &str) {
    match rest.split_once(' ') {
        Some((first, after))
            if first.len() >= 8 && first.as_bytes()[2] == b':' && first.contains('.') =>
        {
            (Some(first), after)
        }
        _ => (None, rest),
    }
}

/// `epoll_wait(9, ...` -> `epoll_wait`.
fn call_name(text: &str) -> Option<&str> {
    let (name, _) = text.split_once('(')?;
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then_some(name)
}

/// The text after the last `) = ` (strace pads before `=` to a column).
fn split_result(text: &str) -> Option<&str> {
    let eq = text.rfind(" = ")?;
    let before = text[..eq].trim_end();
    before.ends_with(')').then(|| text[eq + 3..].trim())
}

/// strace pads short calls to put `=` in column 40; one space reads better here.
fn tidy_padding(text: &str) -> String {
    match text.rfind(" = ") {
        Some(eq) => format!("{} = {}", text[..eq].trim_end(), &text[eq + 3..]),
        None => text.to_string(),
    }
}

/// Where strace is: the first `strace` on PATH.
pub fn find_strace() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("strace"))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &str) -> (TraceFile, Vec<Call>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, lines).unwrap();
        let mut trace = TraceFile::new(&path);
        let calls = trace.read_new();
        (trace, calls)
    }

    #[test]
    fn joins_unfinished_and_resumed_and_keeps_the_pending_wait() {
        let (trace, calls) = parse(
            "10 epoll_wait(9,  <unfinished ...>\n\
             11 recvfrom(8, \"a = b\", 5, 0, NULL, NULL)   = 5\n\
             10 <... epoll_wait resumed>[{events=EPOLLIN, data={u32=8, u64=8}}], 1024, -1) = 1\n\
             11 recvfrom(8, 0x7f, 5, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable)\n\
             10 --- SIGUSR1 {si_signo=SIGUSR1, si_code=SI_USER} ---\n\
             11 clone3({flags=CLONE_VM}, 88) = 12\n\
             10 accept4(3, ",
        );
        assert_eq!(calls.len(), 5);
        assert_eq!(
            calls[0].text,
            "recvfrom(8, \"a = b\", 5, 0, NULL, NULL) = 5"
        );
        assert_eq!(calls[0].returned(), Some(5));
        assert_eq!(calls[0].first_fd(), Some(8));
        assert_eq!(calls[1].name, "epoll_wait");
        assert_eq!(
            calls[1].text,
            "epoll_wait(9, [{events=EPOLLIN, data={u32=8, u64=8}}], 1024, -1) = 1"
        );
        assert_eq!(calls[2].errno(), Some("EAGAIN"));
        assert_eq!(calls[2].returned(), None);
        assert_eq!(calls[3].kind, Kind::Signal);
        assert_eq!(calls[3].name, "SIGUSR1");
        assert_eq!(
            trace.pending().get(&10).map(String::as_str),
            Some("accept4")
        );
        assert!(
            trace.tids.contains(&12),
            "the clone's child is part of the tree"
        );
    }

    #[test]
    fn reads_time_stamps() {
        let (_, calls) = parse("10 02:11:14.123456 close(5) = 0\n");
        assert_eq!(calls[0].time.as_deref(), Some("02:11:14.123456"));
        assert_eq!(calls[0].text, "close(5) = 0");
    }
}
