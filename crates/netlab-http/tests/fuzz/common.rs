//! Counting the cases a property ran. Without proptest's `fork` feature every case runs in the
//! test's own thread, so a thread-local counter sees exactly that property's cases.

use std::cell::Cell;

use proptest::test_runner::{Config, FileFailurePersistence};

thread_local! {
    static CASES: Cell<u64> = const { Cell::new(0) };
}

/// Called first in every property body.
pub fn case() {
    CASES.with(|c| c.set(c.get() + 1));
}

/// Runs a property (a function made by `proptest!` without `#[test]`), then prints how many
/// cases it ran. A failing property panics inside, with proptest's minimal failing input.
pub fn counted(name: &str, property: fn()) -> u64 {
    CASES.with(|c| c.set(0));
    property();
    let cases = CASES.with(Cell::get);
    eprintln!("fuzz: {name}: {cases} cases");
    cases
}

/// Bytes that matter to an HTTP parser, to draw from more often than 1 in 256.
pub const INTERESTING: &[u8] =
    b"\r\n\t \x00\x0b\x0c\x7f\x80\xff:;,=-/\\.%?#\"*WHTPGET0123456789aAfFxX";

/// proptest's defaults (`PROPTEST_CASES` still applies), with failures saved beside each
/// property's file: `fuzz/request.rs` keeps them in `fuzz/request.proptest-regressions`.
pub fn config() -> Config {
    Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}
