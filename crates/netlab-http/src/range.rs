//! One `Range: bytes=...` header (RFC 9110 §14) against a file of a known length.
//!
//! Taken: `bytes=first-last`, `bytes=first-` (to the end), `bytes=-suffix` (the last bytes).
//! A `last` past the end is clamped; a suffix longer than the file means the whole file (as a
//! 206). Unsatisfiable (`first` at or past the end, a zero suffix, any range of an empty
//! file): 416 with `Content-Range: bytes */LENGTH`.
//!
//! Ignored, so the whole file is sent with 200, as RFC 9110 §14.2 lets a server do: other
//! units, syntax that does not parse (`bytes=5-3`, `bytes=x`), and several ranges at once
//! (`bytes=0-1,5-6`: a multipart/byteranges body is more machinery than this lab needs, and
//! ignoring many small ranges is also the usual defence against range amplification).

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// 200, the whole file.
    Full,
    /// 206, bytes `start..=end` (inclusive, as `Content-Range` writes them).
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Decides what a `Range` header (if any) asks of a file `len` bytes long.
pub fn evaluate_range(header: Option<&str>, len: u64) -> RangeDecision {
    let Some(header) = header else {
        return RangeDecision::Full;
    };
    let Some((unit, specs)) = header.split_once('=') else {
        return RangeDecision::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeDecision::Full;
    }
    let mut specs = specs.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeDecision::Full; // none, or several
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeDecision::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    match (number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || len == 0 {
                RangeDecision::Unsatisfiable
            } else {
                RangeDecision::Partial {
                    start: len - suffix.min(len),
                    end: len - 1,
                }
            }
        }
        // bytes=N-: from N to the end.
        (Some(start), None) if last.is_empty() => from(start, u64::MAX, len),
        // Compared as written, not as saturated u64s: `bytes=10^24-2*10^19` is invalid (last
        // below first), so 200, where both numbers as u64::MAX said 416 (found by tests/fuzz).
        (Some(start), Some(end)) if decimal_le(first, last) => from(start, end, len),
        _ => RangeDecision::Full,
    }
}

fn from(start: u64, end: u64, len: u64) -> RangeDecision {
    if start >= len {
        RangeDecision::Unsatisfiable
    } else {
        RangeDecision::Partial {
            start,
            end: end.min(len - 1),
        }
    }
}

/// Digits only; a number too large for u64 counts as u64::MAX (it is past any file's end).
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// `a <= b` for two digit strings of any length.
fn decimal_le(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    (a.len(), a) <= (b.len(), b)
}

#[cfg(test)]
mod tests {
    use super::RangeDecision::*;
    use super::*;

    #[test]
    fn edge_cases() {
        let r = |h: &str, len| evaluate_range(Some(h), len);
        assert_eq!(evaluate_range(None, 10), Full);
        assert_eq!(r("bytes=0-0", 10), Partial { start: 0, end: 0 });
        assert_eq!(r("bytes=2-", 10), Partial { start: 2, end: 9 });
        assert_eq!(r("bytes=-3", 10), Partial { start: 7, end: 9 });
        assert_eq!(r("bytes=-30", 10), Partial { start: 0, end: 9 });
        assert_eq!(r("bytes=5-100", 10), Partial { start: 5, end: 9 });
        assert_eq!(r("BYTES = 9-9", 10), Partial { start: 9, end: 9 });
        assert_eq!(r("bytes=10-", 10), Unsatisfiable);
        assert_eq!(r("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(r("bytes=-0", 10), Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Unsatisfiable);
        assert_eq!(r("bytes=-5", 0), Unsatisfiable);
        assert_eq!(r("bytes=99999999999999999999999-", 10), Unsatisfiable);
        assert_eq!(r("bytes=5-3", 10), Full);
        assert_eq!(r("bytes=0010-9", 20), Full);
        assert_eq!(r("bytes=9-0010", 20), Partial { start: 9, end: 10 });
        // Found by tests/fuzz: both past u64::MAX, last below first.
        assert_eq!(
            r("bytes=1000000000000000000000000-20000000000000000000", 0),
            Full
        );
        assert_eq!(
            r("bytes=20000000000000000000-1000000000000000000000000", 9),
            Unsatisfiable
        );
        assert_eq!(r("bytes=0-1,4-5", 10), Full);
        assert_eq!(r("bytes=x-", 10), Full);
        assert_eq!(r("bytes=-", 10), Full);
        assert_eq!(r("items=0-1", 10), Full);
        let big = 5u64 << 30;
        assert_eq!(
            r("bytes=4294967296-", big),
            Partial {
                start: 1 << 32,
                end: big - 1
            }
        );
    }
}
