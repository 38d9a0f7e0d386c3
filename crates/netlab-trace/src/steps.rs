//! The steps: one client action each, and the named scenarios that string them together.

use serde::Serialize;

use crate::models::Protocol;

/// One client action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Start,
    Connect,
    SendLine,
    ReadEcho,
    SendLarge,
    ReadRest,
    SecondClient,
    HalfClose,
    Reset,
    GetSmall,
    GetLarge,
    NotModified,
    Range,
    Close,
    Sigusr1,
    Sigterm,
}

impl Action {
    /// The step's id, as in `--format json` and the notes' `steps = [...]`.
    pub fn id(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Connect => "connect",
            Action::SendLine => "send-line",
            Action::ReadEcho => "read-echo",
            Action::SendLarge => "send-large",
            Action::ReadRest => "read-rest",
            Action::SecondClient => "second-client",
            Action::HalfClose => "half-close",
            Action::Reset => "reset",
            Action::GetSmall => "get-small",
            Action::GetLarge => "get-large",
            Action::NotModified => "not-modified",
            Action::Range => "range",
            Action::Close => "close",
            Action::Sigusr1 => "sigusr1",
            Action::Sigterm => "sigterm",
        }
    }

    /// The action in words, for the step's header.
    pub fn words(self) -> &'static str {
        match self {
            Action::Start => "the server starts: what it sets up before its first wait",
            Action::Connect => "a client connects",
            Action::SendLine => "the client sends one line, \"hello\\n\", and does not read yet",
            Action::ReadEcho => "the client reads the echo",
            Action::SendLarge => {
                "the client sends a message larger than the socket buffers, without reading"
            }
            Action::ReadRest => "the client reads the rest of the echo",
            Action::SecondClient => "a second client connects while the first is idle",
            Action::HalfClose => "the first client half-closes (shutdown SHUT_WR)",
            Action::Reset => "a client resets its connection (close with SO_LINGER 0)",
            Action::GetSmall => "GET of a small file (13 bytes)",
            Action::GetLarge => "GET of a large file (4 MiB), read as it comes",
            Action::NotModified => "GET of the small file again, If-Modified-Since: answered 304",
            Action::Range => "GET of bytes 0-99 of the large file: a range, answered 206",
            Action::Close => "the client closes its keep-alive connection",
            Action::Sigusr1 => "kill -USR1: the server prints its counters",
            Action::Sigterm => "kill -TERM: the server stops",
        }
    }
}

/// A named list of steps.
pub struct Scenario {
    pub name: &'static str,
    pub protocol: Protocol,
    pub about: &'static str,
    pub steps: &'static [Action],
}

use Action::*;

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "all",
        protocol: Protocol::Echo,
        about: "every step",
        steps: &[
            Start,
            Connect,
            SendLine,
            ReadEcho,
            SendLarge,
            ReadRest,
            SecondClient,
            HalfClose,
            Reset,
            Sigusr1,
            Sigterm,
        ],
    },
    Scenario {
        name: "basic",
        protocol: Protocol::Echo,
        about: "one client: connect, a line, its echo, half-close",
        steps: &[Start, Connect, SendLine, ReadEcho, HalfClose, Sigterm],
    },
    Scenario {
        name: "large",
        protocol: Protocol::Echo,
        about: "a message larger than the socket buffers, then its echo",
        steps: &[Start, Connect, SendLarge, ReadRest, HalfClose, Sigterm],
    },
    Scenario {
        name: "clients",
        protocol: Protocol::Echo,
        about: "two clients: the second connects while the first is idle, then resets",
        steps: &[Start, Connect, SecondClient, Reset, HalfClose, Sigterm],
    },
    Scenario {
        name: "signals",
        protocol: Protocol::Echo,
        about: "no client: SIGUSR1, then SIGTERM",
        steps: &[Start, Sigusr1, Sigterm],
    },
    Scenario {
        name: "all",
        protocol: Protocol::Http,
        about: "every step",
        steps: &[
            Start,
            Connect,
            GetSmall,
            GetLarge,
            NotModified,
            Range,
            Close,
            Sigusr1,
            Sigterm,
        ],
    },
    Scenario {
        name: "basic",
        protocol: Protocol::Http,
        about: "one GET of a small file",
        steps: &[Start, Connect, GetSmall, Close, Sigterm],
    },
    Scenario {
        name: "large",
        protocol: Protocol::Http,
        about: "one GET of a large file",
        steps: &[Start, Connect, GetLarge, Close, Sigterm],
    },
];

/// The scenario `name` for servers speaking `protocol`.
pub fn scenario(name: &str, protocol: Protocol) -> Option<&'static Scenario> {
    SCENARIOS
        .iter()
        .find(|s| s.name == name && s.protocol == protocol)
}
