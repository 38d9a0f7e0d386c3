//! netlab-benches: Criterion benches only; this library is empty on purpose (Cargo wants a lib
//! or a bin in every package).
//!
//! | bench        | what one iteration is                                                   |
//! |--------------|-------------------------------------------------------------------------|
//! | `wait_calls` | one `select` / `poll` / `epoll_wait` over N watched sockets, one ready  |
//! | `echo_conn`  | a 512 B or 64 KiB echo through `EchoConn::read_once` + `write_once`     |
//! | `procfs`     | `procfs::stat` / `status` / `open_fds` of this process                  |
//!
//! Run them all with `cargo bench -p netlab-benches`; figures and method are in README.md.
