//! The models the stepper knows: one table entry each. Adding a server is one entry here (and,
//! if its lab has notes, one line in [`crate::notes::LAB_NOTES`]); a model whose binary is not
//! built is listed as absent and skipped.

/// What kind of client drives the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The echo protocol: bytes in, the same bytes back.
    Echo,
    /// HTTP/1.1 file server (fileserve): GETs of files the stepper writes into a temp root.
    Http,
}

/// One server model as the stepper runs it.
#[derive(Debug, Clone, Copy)]
pub struct TraceModel {
    /// The name on the command line: `trace epoll-et`.
    pub name: &'static str,
    /// The binary, found next to this one (netlab_loadgen::servers::locate_servers).
    pub bin: &'static str,
    /// Flags that choose the variant (the stepper adds where to listen).
    pub args: &'static [&'static str],
    /// The lab folder under labs/, whose trace-notes.toml explains the lines.
    pub lab: &'static str,
    pub protocol: Protocol,
    /// `strace -e trace=` beside the ones every model gets ([`COMMON_CALLS`]).
    pub calls: &'static str,
    /// One line for `--list`.
    pub about: &'static str,
}

/// Traced for every model: execve (where the server's own calls begin: before it, strace's
/// child is still strace), the socket calls (`%network`: socket, bind, listen, accept4,
/// recvfrom, sendto, shutdown, socketpair, ...), close, and write (the listening line, the
/// hints, the SIGUSR1 report and the stopped line).
pub const COMMON_CALLS: &str = "execve,%network,close,write";

pub const MODELS: &[TraceModel] = &[
    TraceModel {
        name: "blocking",
        bin: "echo-blocking",
        args: &["--mode", "threads"],
        lab: "01-blocking",
        protocol: Protocol::Echo,
        calls: "clone,clone3,poll",
        about: "blocking calls, a thread per connection",
    },
    TraceModel {
        name: "iterative",
        bin: "echo-blocking",
        args: &["--mode", "iterative"],
        lab: "01-blocking",
        protocol: Protocol::Echo,
        calls: "clone,clone3,poll",
        about: "blocking calls, one client at a time",
    },
    TraceModel {
        name: "select",
        bin: "echo-select",
        args: &[],
        lab: "02-select",
        protocol: Protocol::Echo,
        calls: "pselect6,select",
        about: "select(2): whole fd sets in and out on every call",
    },
    TraceModel {
        name: "poll",
        bin: "echo-poll",
        args: &[],
        lab: "03-poll",
        protocol: Protocol::Echo,
        calls: "poll,ppoll",
        about: "poll(2): the whole array in on every call",
    },
    TraceModel {
        name: "epoll-lt",
        bin: "echo-epoll-lt",
        args: &[],
        lab: "04-epoll-lt",
        protocol: Protocol::Echo,
        calls: "epoll_create1,epoll_ctl,epoll_wait,epoll_pwait",
        about: "epoll, level-triggered: EPOLL_CTL_MOD when a wish changes",
    },
    TraceModel {
        name: "epoll-et",
        bin: "echo-epoll-et",
        args: &[],
        lab: "05-epoll-et",
        protocol: Protocol::Echo,
        calls: "epoll_create1,epoll_ctl,epoll_wait,epoll_pwait",
        about: "epoll, edge-triggered: registered once, a short read shows the socket drained",
    },
    TraceModel {
        name: "epoll-et-drain",
        bin: "echo-epoll-et",
        args: &["--drain-to-eagain"],
        lab: "05-epoll-et",
        protocol: Protocol::Echo,
        calls: "epoll_create1,epoll_ctl,epoll_wait,epoll_pwait",
        about: "the textbook edge-triggered loop (--drain-to-eagain): read until EAGAIN",
    },
    TraceModel {
        name: "mio",
        bin: "echo-mio",
        args: &[],
        lab: "08-mio",
        protocol: Protocol::Echo,
        calls: "epoll_create1,epoll_ctl,epoll_wait,epoll_pwait",
        about: "mio: edge-triggered epoll underneath",
    },
    TraceModel {
        name: "uring",
        bin: "echo-uring",
        args: &[],
        lab: "09-io-uring",
        protocol: Protocol::Echo,
        calls: "io_uring_setup,io_uring_enter,io_uring_register",
        about: "io_uring: submit the I/O, collect completions",
    },
    TraceModel {
        name: "fork",
        bin: "echo-fork",
        args: &["--reap", "sigchld"],
        lab: "07-processes",
        protocol: Protocol::Echo,
        calls: "clone,clone3,fork,vfork,wait4,kill,exit_group,read",
        about: "a process per connection",
    },
    TraceModel {
        name: "tokio",
        bin: "echo-tokio",
        args: &[],
        lab: "11-tokio",
        protocol: Protocol::Echo,
        calls: "epoll_create1,epoll_ctl,epoll_wait,epoll_pwait,clone3",
        about: "tokio's runtime (epoll underneath)",
    },
    TraceModel {
        name: "c",
        bin: "echo-c",
        args: &[],
        lab: "12-c",
        protocol: Protocol::Echo,
        calls: "epoll_create1,epoll_ctl,epoll_wait,epoll_pwait,read",
        about: "the level-triggered epoll loop in plain C",
    },
    TraceModel {
        name: "reuseport",
        bin: "echo-reuseport",
        args: &["--threads", "2"],
        lab: "13-reuseport",
        protocol: Protocol::Echo,
        calls: "epoll_create1,epoll_ctl,epoll_wait,epoll_pwait,clone3",
        about: "SO_REUSEPORT: a listener per thread (two here)",
    },
    TraceModel {
        name: "fileserve",
        bin: "fileserve",
        args: &["--mode", "sendfile"],
        lab: "06-fileserve",
        protocol: Protocol::Http,
        calls: "epoll_create1,epoll_ctl,epoll_wait,epoll_pwait,openat,openat2,sendfile,pread64,statx,fstat,newfstatat",
        about: "HTTP file server, sendfile(2): the page cache to the socket",
    },
    TraceModel {
        name: "fileserve-copy",
        bin: "fileserve",
        args: &["--mode", "copy"],
        lab: "06-fileserve",
        protocol: Protocol::Http,
        calls: "epoll_create1,epoll_ctl,epoll_wait,epoll_pwait,openat,openat2,sendfile,pread64,statx,fstat,newfstatat",
        about: "HTTP file server, pread(2) + write(2): every byte through user space",
    },
];

/// Looks a model up by name; `echo-epoll-et` works as well as `epoll-et`.
pub fn find(name: &str) -> Option<&'static TraceModel> {
    let name = name.trim();
    let short = name.strip_prefix("echo-").unwrap_or(name);
    MODELS.iter().find(|m| m.name == short || m.name == name)
}

impl TraceModel {
    /// The whole `-e trace=` list.
    pub fn trace_list(&self) -> String {
        format!("{COMMON_CALLS},{}", self.calls)
    }
}
