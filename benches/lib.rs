//! Criterion benches (being written)
