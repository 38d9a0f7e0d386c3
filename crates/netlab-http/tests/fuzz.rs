//! Property tests (proptest, stable Rust) for everything in netlab-http that reads bytes a
//! client chose: the request head, the target, `Range`, the conditional headers, chunked
//! framing, and opening a path beneath the root.
//!
//! Each property runs `PROPTEST_CASES` cases (proptest's default, 256, when unset) and, when it
//! passes, prints `fuzz: NAME: N cases` on stderr, which `cargo test -- --nocapture` shows.
//! `scripts/fuzz-http.sh` runs them in release mode with enough cases for a million in all and
//! adds the counts up. A case that fails is saved by proptest beside its source file
//! (`tests/fuzz/*.proptest-regressions`, committed) and replayed first on every later run.

#[path = "fuzz/common.rs"]
mod common;
#[path = "fuzz/conditional.rs"]
mod conditional;
#[path = "fuzz/range.rs"]
mod range;
#[path = "fuzz/request.rs"]
mod request;
#[path = "fuzz/resolve.rs"]
mod resolve;
#[path = "fuzz/target.rs"]
mod target;
