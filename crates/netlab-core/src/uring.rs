//! io_uring for the completion-based lab: the one place that server is `unsafe`.
//!
//! With select, poll and epoll the kernel says "you may read now", and the program calls `read`
//! with its buffer right then. With io_uring the program says "read into this buffer" and learns
//! later that it happened; until the completion arrives the kernel may write into that memory at
//! any moment. Two rules follow, and this module keeps both:
//!
//! - **A send takes its buffer** (`Vec<u8>`) and the completion gives it back, so it cannot be
//!   freed or reused while the kernel reads it (tokio-uring's API has the same shape).
//! - **Receives draw from one pool**, a *provided buffer ring* (Linux 5.19) that the ring owns:
//!   `count` buffers of `size` bytes that the kernel picks from only when data has arrived. A
//!   connection with nothing to read holds no buffer. Each received chunk is copied out into a
//!   `Vec<u8>` and its buffer goes straight back to the pool, so the pool never runs dry because
//!   of a slow client; the pool is freed only once the kernel has let go of it.
//!
//! Multishot operations (accept, receive) are submitted once and complete many times; each
//! completion says whether more will follow (`more`). When one ends (an error, end of file, an
//! empty pool, or a cancellation), the caller asks again if it still wants it.
//!
//! Syscalls: `io_uring_setup(2)` once, `io_uring_register(2)` for the buffer ring, then one
//! `io_uring_enter(2)` per batch to submit what is queued and wait for completions; the accepts,
//! receives and sends themselves never appear in strace.
//!
//! The file runs past 750 lines (610 of code, the rest its tests) on purpose: every `unsafe`
//! block here leans on the same two ownership rules above, and keeping the ring, the buffer pool
//! and the operations in one file keeps that argument in one place.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

/// user_data of cancellations; their own completions are ignored.
const CANCEL: u64 = u64::MAX;

/// The buffer group every multishot receive draws from (a ring has one pool here).
const BUFFER_GROUP: u16 = 0;

/// How submissions reach the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submission {
    /// The loop's own `io_uring_enter` submits and waits (`IORING_SETUP_SINGLE_ISSUER |
    /// IORING_SETUP_DEFER_TASKRUN`: one thread submits, and the kernel's completion work runs
    /// only inside that call, as one batch, never interrupting the loop elsewhere).
    Enter,
    /// A kernel thread (`iou-sqp-PID`, one of the process's threads) polls the submission ring,
    /// so submitting needs no syscall while it is awake; it sleeps after `idle` without work.
    /// `io_uring_enter` is still called to wait for completions.
    SqPoll { idle: Duration },
}

/// Names an operation in flight, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(u64);

/// An io_uring instance and the operations it has in flight, with what each one borrowed.
pub struct Ring {
    ring: IoUring,
    /// The operations in flight, each at a slot that is reused once its last completion is in.
    /// An operation's user_data is its slot and, above bit 32, its sequence number, so that a
    /// late cancellation of a finished operation matches nothing instead of its slot's next one.
    in_flight: Slab<(u32, Op)>,
    next_seq: u32,
    pool: Option<BufferPool>,
    /// Set when `cancel_all` gave up waiting: the kernel may still write into the pool.
    leaked: bool,
    /// Which fds are in the registered file table, at the slot of their own number.
    fixed: Vec<bool>,
    reaped: Vec<(u64, i32, u32)>,
}

/// An fd as an operation names it.
enum Target {
    Fixed(types::Fixed),
    Fd(types::Fd),
}

/// What an operation in flight holds on to until its last completion.
enum Op {
    AcceptMulti,
    /// A multishot receive, or a single one (`recv_once`): they complete alike.
    Recv {
        fd: RawFd,
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
    HangUpWatch {
        fd: RawFd,
    },
    Timeout {
        _spec: Box<types::Timespec>,
    },
}

/// A finished operation (or, for a multishot one, one of its results).
pub enum Completion {
    /// Multishot `accept`: a new connection's fd. `more: false`: the accept is no longer armed.
    Accepted {
        result: io::Result<OwnedFd>,
        more: bool,
    },
    /// `recv` (multishot or once): bytes that arrived, copied out of the pool (empty: end of
    /// file). `more: false`: the receive is no longer armed (end of file, an error, an empty
    /// pool (ENOBUFS), a cancellation (ECANCELED), the kernel ended it, or it was a single one).
    Received {
        fd: RawFd,
        result: io::Result<Vec<u8>>,
        more: bool,
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
    /// `watch_hang_up`: the peer shut down its sending side, or the connection failed (or the
    /// watch was cancelled).
    HungUp { fd: RawFd },
    /// `timeout`: the time has passed.
    TimedOut,
}

impl Ring {
    /// `io_uring_setup(2)` with room for `entries` queued submissions (and four times as many
    /// completions, as multishot operations post several each).
    pub fn new(entries: u32, submission: Submission) -> io::Result<Ring> {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(entries * 4).setup_submit_all();
        match submission {
            Submission::Enter => builder.setup_single_issuer().setup_defer_taskrun(),
            Submission::SqPoll { idle } => {
                builder.setup_sqpoll(u32::try_from(idle.as_millis()).unwrap_or(u32::MAX))
            }
        };
        Ok(Ring {
            ring: builder.build(entries)?,
            in_flight: Slab::new(),
            next_seq: 0,
            pool: None,
            leaked: false,
            fixed: Vec::new(),
            reaped: Vec::new(),
        })
    }

    /// Makes a registered file table of `slots` empty slots
    /// (`io_uring_register(IORING_REGISTER_FILES)`, sparse), for
    /// [`register_file`](Self::register_file). The kernel refuses more slots than RLIMIT_NOFILE.
    pub fn register_file_table(&mut self, slots: u32) -> io::Result<()> {
        self.ring.submitter().register_files_sparse(slots)?;
        self.fixed = vec![false; slots as usize];
        Ok(())
    }

    /// Puts `fd` in the registered file table, at slot `fd`
    /// (`io_uring_register(IORING_REGISTER_FILES_UPDATE)`): operations on it then name the slot
    /// (`IOSQE_FIXED_FILE`) and the kernel skips looking the fd up and taking a reference on its
    /// file for each one. Returns false, and changes nothing, when `fd` is beyond the table:
    /// operations then use the fd as usual.
    pub fn register_file(&mut self, fd: RawFd) -> io::Result<bool> {
        let Some(slot) = usize::try_from(fd).ok().filter(|&s| s < self.fixed.len()) else {
            return Ok(false);
        };
        self.ring
            .submitter()
            .register_files_update(slot as u32, &[fd])?;
        self.fixed[slot] = true;
        Ok(true)
    }

    /// Takes `fd` out of the registered file table. Call it before close(2): the table holds a
    /// reference to the file, so the socket would stay open after the close.
    pub fn unregister_file(&mut self, fd: RawFd) -> io::Result<()> {
        if let Some(slot) = usize::try_from(fd)
            .ok()
            .filter(|&s| self.fixed.get(s) == Some(&true))
        {
            self.ring
                .submitter()
                .register_files_update(slot as u32, &[-1])?;
            self.fixed[slot] = false;
        }
        Ok(())
    }

    /// How an operation names `fd`: its registered slot if it has one, else the fd.
    fn target(&self, fd: RawFd) -> Target {
        match usize::try_from(fd).ok().and_then(|s| self.fixed.get(s)) {
            Some(true) => Target::Fixed(types::Fixed(fd as u32)),
            _ => Target::Fd(types::Fd(fd)),
        }
    }

    /// Gives the kernel a pool of `count` receive buffers of `size` bytes each
    /// (`io_uring_register(IORING_REGISTER_PBUF_RING)`), for [`recv_multi`](Self::recv_multi).
    /// `count` must be a power of two, at most 32768. The memory is mapped, not touched: a page
    /// counts in RSS only once the kernel has received into it.
    pub fn provide_buffers(&mut self, count: u16, size: u32) -> io::Result<()> {
        if !count.is_power_of_two() || count > 32768 || size == 0 || self.pool.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two up to 32768, size at least 1, one pool",
            ));
        }
        let mut pool = BufferPool::map(count, size)?;
        // SAFETY: the entries are mapped memory owned by `pool`, which `self` keeps until the
        // group is unregistered in `drop` (or leaks if the kernel may still use it).
        unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                pool.entries as u64,
                count,
                BUFFER_GROUP,
                0,
            )?;
        }
        for bid in 0..count {
            pool.give_back(bid);
        }
        self.pool = Some(pool);
        Ok(())
    }

    /// Queues a multishot `accept4(fd, NULL, NULL, SOCK_CLOEXEC)`: one submission, a completion
    /// per connection until it ends.
    pub fn accept_multi(&mut self, listener: &impl AsRawFd) -> io::Result<OpId> {
        let fd = types::Fd(listener.as_raw_fd());
        let entry = opcode::AcceptMulti::new(fd)
            .flags(libc::SOCK_CLOEXEC)
            .build();
        self.push(entry, Op::AcceptMulti)
    }

    /// Queues a multishot `recv` on `fd` into buffers of the pool: a completion per chunk that
    /// arrives, until it ends. Needs [`provide_buffers`](Self::provide_buffers) first.
    pub fn recv_multi(&mut self, fd: RawFd) -> io::Result<OpId> {
        if self.pool.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "recv_multi needs provide_buffers first",
            ));
        }
        let entry = match self.target(fd) {
            Target::Fixed(slot) => opcode::RecvMulti::new(slot, BUFFER_GROUP).build(),
            Target::Fd(fd) => opcode::RecvMulti::new(fd, BUFFER_GROUP).build(),
        };
        self.push(entry, Op::Recv { fd })
    }

    /// Queues a single `recv` on `fd` into a buffer of the pool: one completion, with what was
    /// there (empty: end of file). Unlike a multishot receive it never waits for a wake-up
    /// once the peer has shut down: the kernel answers at once with what is left, or with 0.
    pub fn recv_once(&mut self, fd: RawFd) -> io::Result<OpId> {
        let Some(pool) = &self.pool else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "recv_once needs provide_buffers first",
            ));
        };
        let len = pool.size;
        let entry = match self.target(fd) {
            Target::Fixed(slot) => opcode::Recv::new(slot, std::ptr::null_mut(), len),
            Target::Fd(fd) => opcode::Recv::new(fd, std::ptr::null_mut(), len),
        }
        .buf_group(BUFFER_GROUP)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT);
        self.push(entry, Op::Recv { fd })
    }

    /// Queues a `send(fd, &buf[start..end], MSG_NOSIGNAL)`; the ring keeps `buf` until the
    /// completion. The completion may report fewer bytes than asked (a partial send).
    pub fn send(&mut self, fd: RawFd, buf: Vec<u8>, start: usize, end: usize) -> io::Result<()> {
        let bytes = &buf[start..end];
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let entry = match self.target(fd) {
            Target::Fixed(slot) => opcode::Send::new(slot, bytes.as_ptr(), len),
            Target::Fd(fd) => opcode::Send::new(fd, bytes.as_ptr(), len),
        }
        .flags(libc::MSG_NOSIGNAL)
        .build();
        let op = Op::Send {
            fd,
            buf,
            start,
            end,
        };
        self.push(entry, op).map(drop)
    }

    /// Queues a one-shot `poll(fd, POLLIN)`: completes once `fd` is readable.
    pub fn poll_readable(&mut self, fd: RawFd) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).build();
        self.push(entry, Op::PollIn { fd }).map(drop)
    }

    /// Queues a one-shot `poll(fd, POLLRDHUP)`: completes once the peer has shut down its
    /// sending side, or the connection failed (POLLHUP and POLLERR always count). It holds a
    /// reference to the socket: cancel it before close(2).
    pub fn watch_hang_up(&mut self, fd: RawFd) -> io::Result<OpId> {
        let events = libc::POLLRDHUP as u32;
        let entry = match self.target(fd) {
            Target::Fixed(slot) => opcode::PollAdd::new(slot, events).build(),
            Target::Fd(fd) => opcode::PollAdd::new(fd, events).build(),
        };
        self.push(entry, Op::HangUpWatch { fd })
    }

    /// Queues a timer that completes after `after`.
    pub fn timeout(&mut self, after: Duration) -> io::Result<()> {
        let spec = Box::new(
            types::Timespec::new()
                .sec(after.as_secs())
                .nsec(after.subsec_nanos()),
        );
        let entry = opcode::Timeout::new(&*spec).build();
        self.push(entry, Op::Timeout { _spec: spec }).map(drop)
    }

    /// Queues a cancellation of `op` (`IORING_OP_ASYNC_CANCEL`). The operation still completes,
    /// with ECANCELED (or with what it finished meanwhile): act on that completion, not on this
    /// call.
    pub fn cancel(&mut self, op: OpId) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(op.0).build().user_data(CANCEL);
        self.push_entry(&entry)
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
        Ok(self.reap())
    }

    /// The completions in the completion ring, paired with their operations.
    fn reap(&mut self) -> Vec<Completion> {
        let mut reaped = std::mem::take(&mut self.reaped);
        reaped.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
        );
        let completions = reaped
            .drain(..)
            .filter_map(|(id, result, flags)| self.complete(id, result, flags))
            .collect();
        self.reaped = reaped;
        completions
    }

    fn push(&mut self, entry: squeue::Entry, op: Op) -> io::Result<OpId> {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        // Stored first: `op` is what keeps the entry's pointers valid.
        let slot = self.in_flight.insert((seq, op));
        let user_data = u64::from(seq) << 32 | slot as u64;
        if let Err(e) = self.push_entry(&entry.user_data(user_data)) {
            self.in_flight.remove(slot);
            return Err(e);
        }
        Ok(OpId(user_data))
    }

    fn push_entry(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer in `entry` points into its `Op` (a buffer or a timespec on
            // the heap, whose address does not change when the `Op` moves), which sits in
            // `in_flight` and leaves it only when the operation's last completion has been
            // reaped, or, if that never comes, is leaked by `cancel_all`. A cancellation or a
            // multishot operation carries no pointer into user memory (the pool's buffers are
            // the ring's own, see `BufferPool`).
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?; // the submission queue is full: hand it to the kernel first
        }
    }

    /// Pairs one completion with its operation. A multishot operation keeps its entry while
    /// `IORING_CQE_F_MORE` says more will follow.
    fn complete(&mut self, id: u64, result: i32, flags: u32) -> Option<Completion> {
        // Whatever the operation, a buffer the kernel took from the pool is copied out and goes
        // back first, so the pool never loses one.
        let received = cqueue::buffer_select(flags).map(|bid| {
            let len = usize::try_from(result).unwrap_or(0);
            let pool = self.pool.as_mut().expect("a pool buffer without a pool");
            pool.take(bid, len)
        });
        let outcome = if result < 0 {
            Err(io::Error::from_raw_os_error(-result))
        } else {
            Ok(result as usize)
        };
        let more = cqueue::more(flags);
        let (slot, seq) = ((id & u64::from(u32::MAX)) as usize, (id >> 32) as u32);
        // A cancellation's own completion (CANCEL) has no operation: it ends here.
        match self.in_flight.get(slot) {
            Some((in_flight, _)) if *in_flight == seq => {}
            _ => return None,
        }
        let op = if more {
            match &self.in_flight[slot].1 {
                Op::AcceptMulti => Op::AcceptMulti,
                Op::Recv { fd } => Op::Recv { fd: *fd },
                _ => return None, // only multishot operations complete more than once
            }
        } else {
            self.in_flight.remove(slot).1
        };
        Some(match op {
            Op::AcceptMulti => Completion::Accepted {
                result: outcome.map(|fd| {
                    // SAFETY: a successful accept's result is a new fd that nothing else owns.
                    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
                }),
                more,
            },
            Op::Recv { fd } => Completion::Received {
                fd,
                result: outcome.map(|_| received.unwrap_or_default()),
                more,
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
            // A failed or cancelled poll or timeout also comes back as `Readable`, `HungUp` or
            // `TimedOut` (a cancelled `poll_readable` or timeout only in `cancel_all`, when
            // nobody acts on it any more).
            Op::PollIn { fd } => Completion::Readable { fd },
            Op::HangUpWatch { fd } => Completion::HungUp { fd },
            Op::Timeout { .. } => Completion::TimedOut,
        })
    }

    /// Cancels everything in flight and waits (up to a second) for the kernel to finish with
    /// it, returning the completions that came back: an operation that finished before its
    /// cancellation reached it reports success (a send's bytes did go out). An operation whose
    /// completion never came keeps its buffer forever: it is leaked, not freed.
    pub fn cancel_all(&mut self) -> Vec<Completion> {
        let ids: Vec<u64> = self
            .in_flight
            .iter()
            .map(|(slot, (seq, _))| u64::from(*seq) << 32 | slot as u64)
            .collect();
        for id in ids {
            if self.cancel(OpId(id)).is_err() {
                break;
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
            finished.extend(self.reap());
        }
        if !self.in_flight.is_empty() {
            self.leaked = true;
            for (_, op) in self.in_flight.drain() {
                std::mem::forget(op);
            }
        }
        finished
    }
}

impl Drop for Ring {
    /// Operations still in flight may write into their buffers at any time: cancel them and wait
    /// for the kernel to let go before any buffer, or the pool, is freed.
    fn drop(&mut self) {
        self.cancel_all();
        if self.leaked {
            std::mem::forget(self.pool.take());
        } else if self.pool.is_some() {
            let _ = self.ring.submitter().unregister_buf_ring(BUFFER_GROUP);
        }
    }
}

/// A provided buffer ring: `count` entries the kernel reads (address, length, buffer id) and
/// `count` buffers of `size` bytes, both mapped memory. The program adds entries at the tail
/// (the `resv` field of entry 0, a `u16` stored with release ordering); the kernel takes them at
/// its head as data arrives and names the buffer it used in the completion's flags.
struct BufferPool {
    entries: *mut types::BufRingEntry,
    entries_len: usize,
    buffers: *mut u8,
    buffers_len: usize,
    size: u32,
    mask: u16,
    tail: u16,
}

impl BufferPool {
    fn map(count: u16, size: u32) -> io::Result<BufferPool> {
        let entries_len = usize::from(count) * std::mem::size_of::<types::BufRingEntry>();
        let buffers_len = usize::from(count) * size as usize;
        let entries = map_anonymous(entries_len)?.cast::<types::BufRingEntry>();
        let buffers = match map_anonymous(buffers_len) {
            Ok(buffers) => buffers,
            Err(e) => {
                // SAFETY: mapped just above, with this length, and not yet shared with anyone.
                unsafe { libc::munmap(entries.cast(), entries_len) };
                return Err(e);
            }
        };
        Ok(BufferPool {
            entries,
            entries_len,
            buffers,
            buffers_len,
            size,
            mask: count - 1,
            tail: 0,
        })
    }

    /// Puts buffer `bid` back in the ring for the kernel to receive into.
    fn give_back(&mut self, bid: u16) {
        // SAFETY: `tail & mask` indexes one of the `count` mapped entries; the kernel reads only
        // entries between its head and the published tail, and this one is past the tail until
        // the store below publishes it. `bid` is a buffer no completion holds any more.
        unsafe {
            let entry = &mut *self.entries.add(usize::from(self.tail & self.mask));
            entry.set_addr(self.buffers.add(usize::from(bid) * self.size as usize) as u64);
            entry.set_len(self.size);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = types::BufRingEntry::tail(self.entries).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// Copies the first `len` bytes of buffer `bid` out and gives the buffer back.
    fn take(&mut self, bid: u16, len: usize) -> Vec<u8> {
        let len = len.min(self.size as usize);
        // SAFETY: the kernel named `bid` in a completion, so it has finished writing `len`
        // bytes there, and the buffer is out of the ring until `give_back` below.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.buffers.add(usize::from(bid) * self.size as usize), len)
        }
        .to_vec();
        self.give_back(bid);
        bytes
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped by `map` with these lengths; the ring unregistered the
        // group (or leaked the pool instead of dropping it) before this runs.
        unsafe {
            libc::munmap(self.buffers.cast(), self.buffers_len);
            libc::munmap(self.entries.cast(), self.entries_len);
        }
    }
}

/// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)`: zeroed, page-aligned (as
/// a buffer ring must be), and resident only once touched.
fn map_anonymous(len: usize) -> io::Result<*mut u8> {
    // SAFETY: a fresh anonymous mapping aliases nothing; the result is checked below.
    let address = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if address == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(address.cast())
}

#[cfg(test)]
mod tests {
    use super::{Completion, Ring, Submission};
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// Every completion until `want` of them have come (bounded: 50 waits).
    fn collect(ring: &mut Ring, want: usize) -> Vec<Completion> {
        let mut all = Vec::new();
        for _ in 0..50 {
            all.extend(ring.submit_and_wait().unwrap());
            if all.len() >= want {
                break;
            }
        }
        all
    }

    fn received(completions: &[Completion]) -> Vec<(Result<Vec<u8>, i32>, bool)> {
        completions
            .iter()
            .filter_map(|c| match c {
                Completion::Received { result, more, .. } => Some((
                    match result {
                        Ok(bytes) => Ok(bytes.clone()),
                        Err(e) => Err(e.raw_os_error().unwrap()),
                    },
                    *more,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn multishot_receive_chunks_from_the_pool_then_ends_at_eof_and_sends_return_their_buffer() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let mut ring = Ring::new(8, Submission::Enter).unwrap();
        ring.provide_buffers(4, 8).unwrap();
        ring.recv_multi(server.as_raw_fd()).unwrap();
        client.write_all(b"hello, world").unwrap(); // 12 bytes: a full buffer and a partial one
        let chunks = received(&collect(&mut ring, 2));
        let bytes: Vec<u8> = chunks
            .iter()
            .flat_map(|(r, _)| r.clone().unwrap())
            .collect();
        assert_eq!(bytes, b"hello, world");
        assert!(chunks
            .iter()
            .all(|(r, more)| *more && r.as_ref().unwrap().len() <= 8));
        // 40 bytes at once are more than the pool's 32: the kernel runs out within the batch
        // (ENOBUFS ends the receive), the buffers are back once it is reaped, and a new
        // receive gets the rest.
        client.write_all(&[7; 40]).unwrap();
        let (mut total, mut ran_dry) = (0, 0);
        for _ in 0..20 {
            for (result, more) in received(&collect(&mut ring, 1)) {
                match result {
                    Ok(bytes) => total += bytes.len(),
                    Err(errno) => {
                        assert_eq!((errno, more), (libc::ENOBUFS, false));
                        ran_dry += 1;
                        ring.recv_multi(server.as_raw_fd()).unwrap();
                    }
                }
            }
            if total == 40 {
                break;
            }
        }
        assert_eq!((total, ran_dry), (40, 1));
        drop(client); // end of file: the last completion, empty and final
        assert_eq!(
            received(&collect(&mut ring, 1)),
            vec![(Ok(Vec::new()), false)]
        );

        let (server, mut client) = UnixStream::pair().unwrap();
        ring.send(server.as_raw_fd(), b"xxechoxx".to_vec(), 2, 6)
            .unwrap();
        let sent = collect(&mut ring, 1);
        let Some(Completion::Sent {
            buf, start, result, ..
        }) = sent.into_iter().next()
        else {
            panic!("no send completion");
        };
        assert_eq!((buf, start, result.unwrap()), (b"xxechoxx".to_vec(), 2, 4));
        let mut back = [0; 4];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"echo");
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn an_empty_pool_ends_the_receive_with_enobufs_and_a_new_one_gets_the_rest() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let mut ring = Ring::new(8, Submission::Enter).unwrap();
        ring.provide_buffers(1, 4).unwrap(); // one 4-byte buffer
        ring.recv_multi(server.as_raw_fd()).unwrap();
        client.write_all(b"abcdefgh").unwrap();
        // The kernel fills the one buffer, finds the pool empty for the rest (the buffer goes
        // back only when the batch is reaped) and ends the receive.
        let first = received(&collect(&mut ring, 2));
        assert_eq!(
            first,
            vec![(Ok(b"abcd".to_vec()), true), (Err(libc::ENOBUFS), false)]
        );
        ring.recv_multi(server.as_raw_fd()).unwrap(); // as the lab does: ask again
        let rest = received(&collect(&mut ring, 1));
        assert_eq!(rest.first(), Some(&(Ok(b"efgh".to_vec()), true)));
    }

    #[test]
    fn a_cancelled_receive_ends_with_ecanceled() {
        let (server, _client) = UnixStream::pair().unwrap();
        let mut ring = Ring::new(8, Submission::Enter).unwrap();
        ring.provide_buffers(4, 8).unwrap();
        let op = ring.recv_multi(server.as_raw_fd()).unwrap();
        ring.cancel(op).unwrap();
        assert_eq!(
            received(&collect(&mut ring, 1)),
            vec![(Err(libc::ECANCELED), false)]
        );
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn the_hang_up_watch_fires_on_shutdown_and_single_receives_read_the_rest_then_zero() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let mut ring = Ring::new(8, Submission::Enter).unwrap();
        ring.provide_buffers(4, 8).unwrap();
        ring.watch_hang_up(server.as_raw_fd()).unwrap();
        client.write_all(b"0123456789").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let fired = collect(&mut ring, 1);
        assert!(matches!(fired[..], [Completion::HungUp { .. }]));
        // Each single receive takes one buffer's worth (8 bytes), then the end of file.
        let mut chunks = Vec::new();
        for _ in 0..3 {
            ring.recv_once(server.as_raw_fd()).unwrap();
            chunks.extend(received(&collect(&mut ring, 1)));
        }
        assert_eq!(
            chunks,
            vec![
                (Ok(b"01234567".to_vec()), false),
                (Ok(b"89".to_vec()), false),
                (Ok(Vec::new()), false)
            ]
        );
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn bad_pools_are_refused() {
        let mut ring = Ring::new(8, Submission::Enter).unwrap();
        assert!(ring.recv_multi(0).is_err(), "no pool yet");
        assert!(ring.recv_once(0).is_err(), "no pool yet");
        assert!(ring.provide_buffers(3, 8).is_err(), "not a power of two");
        assert!(ring.provide_buffers(4, 0).is_err(), "empty buffers");
        ring.provide_buffers(4, 8).unwrap();
        assert!(ring.provide_buffers(4, 8).is_err(), "one pool per ring");
    }
}
