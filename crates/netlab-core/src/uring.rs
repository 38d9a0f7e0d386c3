//! io_uring for the completion-based lab, with buffers that move: the one place that server is
//! `unsafe`.
//!
//! With select, poll and epoll the kernel says "you may read now", and the program calls `read`
//! with its buffer right then. With io_uring the program says "read into this buffer" and learns
//! later that it happened; until the completion arrives the kernel may write into that memory at
//! any moment. So here an operation *takes* its buffer (`Vec<u8>`) and the completion *gives it
//! back*: a buffer cannot be freed or reused while the kernel holds it. (tokio-uring's API has
//! the same shape, for the same reason.)
//!
//! Syscalls: `io_uring_setup(2)` once, then `io_uring_enter(2)` to submit queued operations and
//! wait for completions; the reads, writes and accepts themselves never appear in strace.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

/// user_data of the cancellations sent when a ring is dropped; their completions are ignored.
const CANCEL: u64 = u64::MAX;

/// An io_uring instance and the operations it has in flight, with what each one borrowed.
pub struct Ring {
    ring: IoUring,
    in_flight: HashMap<u64, Op>,
    next_id: u64,
}

/// What an operation in flight holds on to until its completion.
enum Op {
    Accept,
    Recv {
        fd: RawFd,
        buf: Vec<u8>,
    },
    Send {
        fd: RawFd,
        buf: Vec<u8>,
        start: usize,
        end: usize,
    },
    PollIn {
        fd: RawFd,
    },
    Timeout {
        _spec: Box<types::Timespec>,
    },
}

/// A finished operation, with the buffer it borrowed.
pub enum Completion {
    /// `accept`: the new connection's fd.
    Accepted(io::Result<OwnedFd>),
    /// `recv`: how many bytes landed at the start of `buf` (0: the peer finished sending).
    Received {
        fd: RawFd,
        buf: Vec<u8>,
        result: io::Result<usize>,
    },
    /// `send` of `buf[start..end]`: how many of those bytes went out.
    Sent {
        fd: RawFd,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        result: io::Result<usize>,
    },
    /// `poll_readable`: the fd has something to read.
    Readable { fd: RawFd },
    /// `timeout`: the time has passed.
    TimedOut,
}

impl Ring {
    /// `io_uring_setup(2)` with room for `entries` queued submissions.
    pub fn new(entries: u32) -> io::Result<Ring> {
        Ok(Ring {
            ring: IoUring::new(entries)?,
            in_flight: HashMap::new(),
            next_id: 0,
        })
    }

    /// Queues an `accept4(fd, NULL, NULL, SOCK_CLOEXEC)` on a listening socket.
    pub fn accept(&mut self, listener: &impl AsRawFd) -> io::Result<()> {
        let fd = types::Fd(listener.as_raw_fd());
        let entry = opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
            .flags(libc::SOCK_CLOEXEC)
            .build();
        self.push(entry, Op::Accept)
    }

    /// Queues a `recv` into the whole of `buf`, which the ring keeps until the completion.
    pub fn recv(&mut self, fd: RawFd, mut buf: Vec<u8>) -> io::Result<()> {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let entry = opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), len).build();
        self.push(entry, Op::Recv { fd, buf })
    }

    /// Queues a `send(fd, &buf[start..end], MSG_NOSIGNAL)`; the ring keeps `buf` until the
    /// completion. The completion may report fewer bytes than asked (a partial send).
    pub fn send(&mut self, fd: RawFd, buf: Vec<u8>, start: usize, end: usize) -> io::Result<()> {
        let bytes = &buf[start..end];
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(types::Fd(fd), bytes.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        self.push(
            entry,
            Op::Send {
                fd,
                buf,
                start,
                end,
            },
        )
    }

    /// Queues a one-shot `poll(fd, POLLIN)`: completes once `fd` is readable.
    pub fn poll_readable(&mut self, fd: RawFd) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).build();
        self.push(entry, Op::PollIn { fd })
    }

    /// Queues a timer that completes after `after`.
    pub fn timeout(&mut self, after: Duration) -> io::Result<()> {
        let spec = Box::new(
            types::Timespec::new()
                .sec(after.as_secs())
                .nsec(after.subsec_nanos()),
        );
        let entry = opcode::Timeout::new(&*spec).build();
        self.push(entry, Op::Timeout { _spec: spec })
    }

    /// How many operations the kernel holds.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// `io_uring_enter(2)`: submits everything queued and waits for at least one completion,
    /// then returns all completions there are. A signal makes it fail with `Interrupted` (EINTR),
    /// which the caller retries.
    pub fn submit_and_wait(&mut self) -> io::Result<Vec<Completion>> {
        self.ring.submit_and_wait(1)?;
        let finished: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|cqe| (cqe.user_data(), cqe.result()))
            .collect();
        Ok(finished
            .into_iter()
            .filter_map(|(id, result)| Some(complete(self.in_flight.remove(&id)?, result)))
            .collect())
    }

    fn push(&mut self, entry: squeue::Entry, op: Op) -> io::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let entry = entry.user_data(id);
        loop {
            // SAFETY: every pointer in `entry` points into `op` (a buffer or a timespec on the
            // heap, whose address does not change when `op` moves). `op` is stored in
            // `in_flight` below and leaves it only when the completion for `id` has been reaped,
            // or, if that never comes, is leaked by `drop`: the memory outlives the kernel's use.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                break;
            }
            self.ring.submit()?; // the submission queue is full: hand it to the kernel first
        }
        self.in_flight.insert(id, op);
        Ok(())
    }
}

/// Pairs a completion's result with the operation that asked for it. A poll or timeout reports
/// only that it ended: a failed or cancelled one (which happens only in `cancel_all`, when
/// nobody acts on it any more) also comes back as `Readable` / `TimedOut`.
fn complete(op: Op, result: i32) -> Completion {
    let outcome = if result < 0 {
        Err(io::Error::from_raw_os_error(-result))
    } else {
        Ok(result as usize)
    };
    match op {
        Op::Accept => Completion::Accepted(outcome.map(|fd| {
            // SAFETY: a successful accept completion's result is a new fd that nothing else owns.
            unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
        })),
        Op::Recv { fd, buf } => Completion::Received {
            fd,
            buf,
            result: outcome,
        },
        Op::Send {
            fd,
            buf,
            start,
            end,
        } => Completion::Sent {
            fd,
            buf,
            start,
            end,
            result: outcome,
        },
        Op::PollIn { fd } => Completion::Readable { fd },
        Op::Timeout { .. } => Completion::TimedOut,
    }
}

impl Ring {
    /// Cancels everything in flight and waits (up to a second) for the kernel to finish with
    /// it, returning the completions that came back: an operation that finished before its
    /// cancellation reached it reports success (a send's bytes did go out). An operation whose
    /// completion never came keeps its buffer forever: it is leaked, not freed.
    pub fn cancel_all(&mut self) -> Vec<Completion> {
        let ids: Vec<u64> = self.in_flight.keys().copied().collect();
        for id in ids {
            let cancel = opcode::AsyncCancel::new(id).build().user_data(CANCEL);
            // SAFETY: a cancellation carries no pointers.
            while unsafe { self.ring.submission().push(&cancel) }.is_err() {
                if self.ring.submit().is_err() {
                    break;
                }
            }
        }
        let mut finished = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        while !self.in_flight.is_empty() && Instant::now() < deadline {
            let wait = types::Timespec::new().nsec(50_000_000);
            let args = types::SubmitArgs::new().timespec(&wait);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(_) => break,
            }
            let reaped: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result()))
                .collect();
            for (id, result) in reaped {
                if let Some(op) = self.in_flight.remove(&id) {
                    finished.push(complete(op, result));
                }
            }
        }
        for (_, op) in self.in_flight.drain() {
            std::mem::forget(op);
        }
        finished
    }
}

impl Drop for Ring {
    /// Operations still in flight may write into their buffers at any time: cancel them and wait
    /// for the kernel to let go before the buffers are freed (see [`Ring::cancel_all`]).
    fn drop(&mut self) {
        self.cancel_all();
    }
}
