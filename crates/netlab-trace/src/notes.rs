//! The notes beside each line: data the labs own, one `trace-notes.toml` per lab folder, plus
//! the notes every model shares (`common-notes.toml` in this crate). A lab README and the
//! stepper say the same thing from one source.
//!
//! ```toml
//! [[note]]
//! call = "recvfrom"            # the syscall (or signal name, or "exit")
//! match = '= -1 EAGAIN'        # optional: a regex on the whole call as strace prints it
//! models = ["epoll-et"]        # optional: only for these models
//! steps = ["send-line"]        # optional: only in these steps
//! thread = "other"             # optional: "main" (the server's first thread) or "other"
//! text = "drained: edge-triggered reads until the kernel says 'nothing more'"
//! ```
//!
//! The first note that fits wins: the lab's notes, in file order, then the common ones. A call
//! no note fits is shown plainly, never dropped.

use anyhow::Context;
use regex::Regex;
use serde::Deserialize;

use crate::strace::Call;

/// Every lab's notes, compiled in so the binary runs anywhere. A new lab adds a line.
pub const LAB_NOTES: &[(&str, &str)] = &[
    (
        "01-blocking",
        include_str!("../../../labs/01-blocking/trace-notes.toml"),
    ),
    (
        "02-select",
        include_str!("../../../labs/02-select/trace-notes.toml"),
    ),
    (
        "03-poll",
        include_str!("../../../labs/03-poll/trace-notes.toml"),
    ),
    (
        "04-epoll-lt",
        include_str!("../../../labs/04-epoll-lt/trace-notes.toml"),
    ),
    (
        "05-epoll-et",
        include_str!("../../../labs/05-epoll-et/trace-notes.toml"),
    ),
    (
        "06-fileserve",
        include_str!("../../../labs/06-fileserve/trace-notes.toml"),
    ),
    (
        "07-processes",
        include_str!("../../../labs/07-processes/trace-notes.toml"),
    ),
    (
        "08-mio",
        include_str!("../../../labs/08-mio/trace-notes.toml"),
    ),
    (
        "09-io-uring",
        include_str!("../../../labs/09-io-uring/trace-notes.toml"),
    ),
    (
        "11-tokio",
        include_str!("../../../labs/11-tokio/trace-notes.toml"),
    ),
    ("12-c", include_str!("../../../labs/12-c/trace-notes.toml")),
    (
        "13-reuseport",
        include_str!("../../../labs/13-reuseport/trace-notes.toml"),
    ),
];

const COMMON_NOTES: &str = include_str!("../common-notes.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteFile {
    #[serde(default)]
    note: Vec<RawNote>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNote {
    call: String,
    #[serde(rename = "match")]
    pattern: Option<String>,
    models: Option<Vec<String>>,
    steps: Option<Vec<String>>,
    thread: Option<Thread>,
    text: String,
}

/// Which thread made the call: the server's first one, or another (a thread or child process).
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Thread {
    Main,
    Other,
}

struct Note {
    call: String,
    pattern: Option<Regex>,
    models: Option<Vec<String>>,
    steps: Option<Vec<String>>,
    thread: Option<Thread>,
    text: String,
}

/// The notes for one model: its lab's, then the common ones.
pub struct Notes {
    model: String,
    notes: Vec<Note>,
}

fn parse(source: &str, text: &str) -> anyhow::Result<Vec<Note>> {
    let file: NoteFile = toml::from_str(text).with_context(|| format!("notes in {source}"))?;
    file.note
        .into_iter()
        .map(|raw| {
            let pattern = raw
                .pattern
                .as_deref()
                .map(Regex::new)
                .transpose()
                .with_context(|| format!("a `match` regex in {source}"))?;
            Ok(Note {
                call: raw.call,
                pattern,
                models: raw.models,
                steps: raw.steps,
                thread: raw.thread,
                text: raw.text.trim().to_string(),
            })
        })
        .collect()
}

impl Notes {
    /// The notes for `model`, from lab folder `lab` (a lab with no notes file gets the common
    /// notes only).
    pub fn for_model(model: &str, lab: &str) -> anyhow::Result<Notes> {
        let mut notes = Vec::new();
        if let Some((_, text)) = LAB_NOTES.iter().find(|(l, _)| *l == lab) {
            notes.extend(parse(&format!("labs/{lab}/trace-notes.toml"), text)?);
        }
        notes.extend(parse(
            "crates/netlab-trace/common-notes.toml",
            COMMON_NOTES,
        )?);
        Ok(Notes {
            model: model.to_string(),
            notes,
        })
    }

    /// The note for `call` made in step `step` by `thread`, if one fits.
    pub fn explain(&self, call: &Call, step: &str, thread: Thread) -> Option<&str> {
        self.notes
            .iter()
            .find(|n| {
                n.call == call.name
                    && n.models.as_ref().is_none_or(|m| m.contains(&self.model))
                    && n.steps.as_ref().is_none_or(|s| s.iter().any(|s| s == step))
                    && n.thread.is_none_or(|t| t == thread)
                    && n.pattern.as_ref().is_none_or(|p| p.is_match(&call.text))
            })
            .map(|n| n.text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_notes_file_parses() {
        for (lab, text) in LAB_NOTES {
            parse(lab, text).unwrap();
        }
        parse("common", COMMON_NOTES).unwrap();
    }

    #[test]
    fn the_first_fitting_note_wins() {
        let notes = Notes {
            model: "epoll-et".into(),
            notes: parse(
                "t",
                r#"
                [[note]]
                call = "recvfrom"
                match = '= -1 EAGAIN'
                models = ["epoll-et"]
                text = "drained"
                [[note]]
                call = "recvfrom"
                text = "read"
                "#,
            )
            .unwrap(),
        };
        let call = |text: &str| Call {
            tid: 1,
            time: None,
            name: "recvfrom".into(),
            kind: crate::strace::Kind::Syscall,
            text: text.into(),
            result: String::new(),
        };
        assert_eq!(
            notes.explain(
                &call("recvfrom(8, 0x1, 5) = -1 EAGAIN (x)"),
                "s",
                Thread::Main
            ),
            Some("drained")
        );
        assert_eq!(
            notes.explain(&call("recvfrom(8, \"a\", 5) = 1"), "s", Thread::Other),
            Some("read")
        );
    }
}
