//! A step's calls as the reader sees them: the main thread's calls plain, others labelled
//! `[pid N]`, each with its note, and repeats folded: a run of the same call becomes one line
//! with a count, and a repeated group (`epoll_wait`, `recvfrom`, `sendto`, again and again)
//! one block with a count. A large message is dozens of `recvfrom(8, ..., 65536) = 65536`:
//! how many depends on the scheduler, what they are does not.

use serde::Serialize;

use crate::strace::{Call, Kind};

/// One shown line: a call (the first of a run), its note, and how many like it came in a row.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// The call as shown: `[pid 12] recvfrom(8, "hello\n", ...) = 6`.
    pub text: String,
    pub name: String,
    pub tid: i32,
    /// `syscall`, `signal` or `exit`.
    pub kind: Kind,
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Calls this line stands for (1 for a single call; in a repeated block, all repeats).
    pub count: usize,
    /// Bytes those calls moved.
    pub bytes: u64,
    /// The line with every number, string and address masked, and no pid: what must be the
    /// same from run to run.
    pub shape: String,
}

/// Socket calls strace's `%network` class traces.
pub fn is_network_call(name: &str) -> bool {
    matches!(
        name,
        "socket"
            | "socketpair"
            | "bind"
            | "listen"
            | "accept"
            | "accept4"
            | "connect"
            | "getsockname"
            | "getpeername"
            | "getsockopt"
            | "setsockopt"
            | "recvfrom"
            | "recvmsg"
            | "recvmmsg"
            | "sendto"
            | "sendmsg"
            | "sendmmsg"
            | "shutdown"
    )
}

/// Bytes a data call moved (its return value), for the step's summary.
pub fn bytes_moved(call: &Call) -> Option<u64> {
    let data = matches!(
        call.name.as_str(),
        "recvfrom"
            | "recvmsg"
            | "read"
            | "readv"
            | "pread64"
            | "sendto"
            | "sendmsg"
            | "write"
            | "writev"
            | "pwrite64"
            | "sendfile"
    );
    data.then(|| call.returned()).flatten().map(|n| n as u64)
}

/// `[pid N] text` for a thread other than the server's main one.
pub fn label(tid: i32, main: i32, text: &str) -> String {
    if tid == main {
        text.to_string()
    } else {
        format!("[pid {tid}] {text}")
    }
}

/// The line with the varying parts masked: numbers (and `0x...`) to `N`, strings to `"…"`,
/// strace's `/* comments */` left out.
pub fn shape(call: &Call) -> String {
    let mut out = String::with_capacity(call.text.len());
    let mut chars = call.text.chars().peekable();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        let word_char = c.is_ascii_alphanumeric() || c == '_';
        let was_in_word = std::mem::replace(&mut in_word, word_char);
        match c {
            '/' if chars.peek() == Some(&'*') => {
                let mut last = ' ';
                for s in chars.by_ref() {
                    if last == '*' && s == '/' {
                        break;
                    }
                    last = s;
                }
                while out.ends_with(' ') {
                    out.pop();
                }
            }
            '0'..='9' if was_in_word => out.push(c),
            '"' => {
                // A string, with strace's escapes; `"..."...` when cut.
                while let Some(s) = chars.next() {
                    match s {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                while chars.peek() == Some(&'.') {
                    chars.next();
                }
                out.push_str("\"…\"");
            }
            '0'..='9' => {
                in_word = false;
                while chars
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.')
                {
                    chars.next();
                }
                out.push('N');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Consecutive lines shown once, and how many times they came in a row.
#[derive(Debug, Clone, Serialize)]
pub struct Block {
    pub lines: Vec<Line>,
    pub repeats: usize,
}

/// Longest group of lines folded as a repeated block.
const MAX_GROUP: usize = 4;

/// Folds runs of one call, then repeated groups of up to four lines.
pub fn collapse(
    calls: &[Call],
    main: i32,
    explain: impl Fn(&Call) -> Option<String>,
) -> Vec<Block> {
    let lines = fold_runs(calls, main, explain);
    let same = |a: &[Line], b: &[Line]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| x.tid == y.tid && x.shape == y.shape)
    };
    let mut blocks: Vec<Block> = Vec::new();
    let mut i = 0;
    'next: while i < lines.len() {
        for k in (2..=MAX_GROUP).rev() {
            if i + 2 * k > lines.len() || !same(&lines[i..i + k], &lines[i + k..i + 2 * k]) {
                continue;
            }
            let mut block = Block {
                lines: lines[i..i + k].to_vec(),
                repeats: 1,
            };
            let mut j = i + k;
            while j + k <= lines.len() && same(&lines[i..i + k], &lines[j..j + k]) {
                for (into, from) in block.lines.iter_mut().zip(&lines[j..j + k]) {
                    into.count += from.count;
                    into.bytes += from.bytes;
                }
                block.repeats += 1;
                j += k;
            }
            blocks.push(block);
            i = j;
            continue 'next;
        }
        blocks.push(Block {
            lines: vec![lines[i].clone()],
            repeats: 1,
        });
        i += 1;
    }
    blocks
}

/// Each thread's calls in the step, as shapes with runs folded (`shape xN`): the main thread
/// first, then by tid (creation order). Two threads' lines may interleave differently from run
/// to run; each thread's own sequence should not.
pub fn threads(calls: &[Call], main: i32) -> Vec<Vec<String>> {
    let mut tids: Vec<i32> = calls.iter().map(|c| c.tid).collect();
    tids.sort_by_key(|&t| (t != main, t));
    tids.dedup();
    tids.iter()
        .map(|&tid| {
            let mut out: Vec<(String, usize)> = Vec::new();
            for call in calls.iter().filter(|c| c.tid == tid) {
                let s = shape(call);
                match out.last_mut() {
                    Some((last, n)) if *last == s => *n += 1,
                    _ => out.push((s, 1)),
                }
            }
            out.into_iter().map(|(s, n)| format!("{s} x{n}")).collect()
        })
        .collect()
}

/// Folds runs of calls of the same shape and the same note, made by the same thread, into one
/// line each. Two calls alike but for their meaning (lab 13's listener and stop pipe, both
/// `epoll_ctl(N, EPOLL_CTL_ADD, N, {events=EPOLLIN, ...})`) stay two lines, each with its note.
fn fold_runs(calls: &[Call], main: i32, explain: impl Fn(&Call) -> Option<String>) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    for call in calls {
        let call_shape = shape(call);
        let bytes = bytes_moved(call).unwrap_or(0);
        let note = explain(call);
        if let Some(last) = lines.last_mut() {
            if last.tid == call.tid
                && last.shape == call_shape
                && last.note == note
                && call.kind == Kind::Syscall
            {
                last.count += 1;
                last.bytes += bytes;
                continue;
            }
        }
        let mut text = call.text.clone();
        if let Some(time) = &call.time {
            text = format!("{time} {text}");
        }
        lines.push(Line {
            text: label(call.tid, main, &text),
            name: call.name.clone(),
            tid: call.tid,
            kind: call.kind,
            result: call.result.clone(),
            note,
            count: 1,
            bytes,
            shape: call_shape,
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(tid: i32, text: &str) -> Call {
        Call {
            tid,
            time: None,
            name: text.split('(').next().unwrap().into(),
            kind: Kind::Syscall,
            text: text.into(),
            result: text.rsplit(" = ").next().unwrap().into(),
        }
    }

    #[test]
    fn masks_what_varies_and_folds_runs() {
        let a = call(
            5,
            "recvfrom(8, \"\\0\\1\\2\"..., 65536, 0, NULL, NULL) = 65536",
        );
        let b = call(5, "recvfrom(8, \"\\3\\4\"..., 65536, 0, NULL, NULL) = 1000");
        let c = call(6, "recvfrom(8, \"x\", 65536, 0, NULL, NULL) = 1");
        assert_eq!(shape(&a), "recvfrom(N, \"…\", N, N, NULL, NULL) = N");
        let s = call(5, "accept4(3, NULL) = 9");
        assert_eq!(shape(&s), "accept4(N, NULL) = N");
        let s = call(5, "--- SIGCHLD {si_utime=1, si_stime=0 /* 0.01 s */} ---");
        assert_eq!(shape(&s), "--- SIGCHLD {si_utime=N, si_stime=N} ---");
        let lines = fold_runs(&[a, b, c], 5, |_| None);
        assert_eq!(lines.len(), 2, "another thread starts a new line");
        assert_eq!(lines[0].count, 2);
        assert_eq!(lines[0].bytes, 66536);
        assert!(lines[1].text.starts_with("[pid 6] "));
    }

    #[test]
    fn folds_a_repeated_group() {
        let wait = || {
            call(
                5,
                "epoll_wait(9, [{events=EPOLLIN, data={u32=8, u64=8}}], 1024, -1) = 1",
            )
        };
        let read = || call(5, "recvfrom(8, \"ab\", 65536, 0, NULL, NULL) = 2");
        let calls = [wait(), read(), wait(), read(), wait(), read(), wait()];
        let blocks = collapse(&calls, 5, |_| None);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].repeats, 3);
        assert_eq!(blocks[0].lines[1].bytes, 6);
        assert_eq!(blocks[1].repeats, 1);
    }
}
