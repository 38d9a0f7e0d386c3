//! One echo round trip through `netlab_core::EchoConn`, the protocol code every server shares: a
//! client writes a 512-byte or 64 KiB message into a Unix socket pair, the server side's
//! `read_once` takes it into the connection's unsent buffer, `write_once` sends it back, and the
//! client reads it all, in one thread, so every iteration is four or more syscalls plus the buffer
//! work. Beside it, `raw_read_write` does the same syscalls with no `EchoConn` (read into the
//! scratch buffer, write straight from it): the gap between the two is what the shared buffer (a
//! copy into a `VecDeque`, the drain, the bookkeeping) costs per message, the only part of a lab
//! server's per-message work that is not the kernel's. It matters for the labs because the load
//! generator compares servers that all run this code: if it were slow, every model would look
//! alike. Times are this thread's CPU time (`netlab_benches::cpu_time_of`), so builds running
//! beside the bench do not inflate them.
//! Run it with `cargo bench -p netlab-benches --bench echo_conn`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use netlab_benches::cpu_time_of;
use netlab_core::echo::READ_CHUNK;
use netlab_core::{EchoConn, Step, Stream};

const MESSAGE_SIZES: [(usize, &str); 2] = [(512, "512B"), (64 * 1024, "64KiB")];

fn echo_conn(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo_conn");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));

    for (size, label) in MESSAGE_SIZES {
        let message: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut back = vec![0u8; size];
        // One scratch buffer of READ_CHUNK, as a server keeps one per loop.
        let mut scratch = vec![0u8; READ_CHUNK];
        group.throughput(Throughput::Bytes(size as u64));

        group.bench_with_input(BenchmarkId::new("EchoConn", label), &size, |b, _| {
            let (server, mut client) = nonblocking_server_pair();
            // A cap well above the message, so the connection never stops reading.
            let mut conn = EchoConn::new(Stream::Unix(server), 4 * READ_CHUNK);
            b.iter_custom(|iters| {
                cpu_time_of(iters, || {
                    client.write_all(&message).expect("client write");
                    echo_through_conn(&mut conn, &mut scratch, size);
                    client.read_exact(&mut back).expect("client read");
                    back[size - 1]
                })
            });
            assert_eq!(back, message, "the echo came back changed");
        });

        group.bench_with_input(BenchmarkId::new("raw_read_write", label), &size, |b, _| {
            let (server, mut client) = nonblocking_server_pair();
            b.iter_custom(|iters| {
                cpu_time_of(iters, || {
                    client.write_all(&message).expect("client write");
                    echo_raw(&server, &mut scratch, size);
                    client.read_exact(&mut back).expect("client read");
                    back[size - 1]
                })
            });
            assert_eq!(back, message, "the echo came back changed");
        });
    }
    group.finish();
}

/// A Unix socket pair whose first end (the server's) is non-blocking, as in every event-loop lab.
/// The client end blocks: it only ever waits for bytes that are already on their way.
fn nonblocking_server_pair() -> (UnixStream, UnixStream) {
    let (server, client) = UnixStream::pair().expect("socketpair");
    server.set_nonblocking(true).expect("O_NONBLOCK");
    (server, client)
}

/// Reads the whole message into the connection, then writes it all back. The client wrote it
/// before we started, and the socket buffers (over 200 KiB by default) hold 64 KiB each way, so
/// EAGAIN here means the setup is wrong, not that we should wait.
fn echo_through_conn(conn: &mut EchoConn, scratch: &mut [u8], size: usize) {
    while conn.pending() < size {
        match conn.read_once(scratch).expect("read_once") {
            Step::Moved(_) => {}
            step => panic!(
                "read_once: {step:?} with {} of {size} bytes in",
                conn.pending()
            ),
        }
    }
    while conn.pending() > 0 {
        match conn.write_once().expect("write_once") {
            Step::Moved(_) => {}
            step => panic!("write_once: {step:?} with {} bytes unsent", conn.pending()),
        }
    }
}

/// The same syscalls with no buffer in between: read into `scratch`, write straight from it.
fn echo_raw(server: &UnixStream, scratch: &mut [u8], size: usize) {
    let mut echoed = 0;
    while echoed < size {
        let n = (&*server).read(scratch).expect("read");
        assert!(
            n > 0,
            "read: end of file with {echoed} of {size} bytes echoed"
        );
        (&*server).write_all(&scratch[..n]).expect("write");
        echoed += n;
    }
}

criterion_group!(benches, echo_conn);
criterion_main!(benches);
