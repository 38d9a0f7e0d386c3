//! `evaluate_range`: never panics; a 206 always lies inside the file; one valid range, spelled
//! in any of the ways RFC 9110 §14 allows, gets the answer a model with exact (u128)
//! arithmetic gives, even for numbers past u64; an accepted range written back out is the
//! same range.

use netlab_http::{evaluate_range, RangeDecision};
use proptest::prelude::*;

use crate::common::{case, config, counted};

/// One range-spec as digit strings (maybe with leading zeros, maybe past u64::MAX).
#[derive(Debug, Clone)]
enum Spec {
    FromTo(String, String),
    From(String),
    Suffix(String),
}

fn value(digits: &str) -> u128 {
    digits.parse().expect("at most 30 digits fit a u128")
}

/// What RFC 9110 §14.1.1-§14.1.2 and this module's doc say, computed exactly.
fn model(spec: &Spec, len: u64) -> RangeDecision {
    let len = u128::from(len);
    let partial = |start: u128, end: u128| RangeDecision::Partial {
        start: start as u64,
        end: end as u64,
    };
    match spec {
        // "invalid if the last-pos value is present and less than the first-pos": ignored.
        Spec::FromTo(a, b) if value(a) > value(b) => RangeDecision::Full,
        Spec::FromTo(a, _) | Spec::From(a) if value(a) >= len => RangeDecision::Unsatisfiable,
        Spec::FromTo(a, b) => partial(value(a), value(b).min(len - 1)),
        Spec::From(a) => partial(value(a), len - 1),
        Spec::Suffix(n) if value(n) == 0 || len == 0 => RangeDecision::Unsatisfiable,
        Spec::Suffix(n) => partial(len - value(n).min(len), len - 1),
    }
}

fn digits() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..64).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "0{0,3}[0-9]{1,4}",
        "[0-9]{18,30}",
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        (digits(), digits()).prop_map(|(a, b)| Spec::FromTo(a, b)),
        digits().prop_map(Spec::From),
        digits().prop_map(Spec::Suffix),
    ]
}

fn file_len() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..100, any::<u64>(), Just(u64::MAX)]
}

/// `bytes=...` in one of the spellings the parser takes: any case of the unit, whitespace
/// around it and the spec, empty list elements around the one range.
fn spell(spec: &Spec, unit: &str, ows: &[String; 4]) -> String {
    let body = match spec {
        Spec::FromTo(a, b) => format!("{a}-{b}"),
        Spec::From(a) => format!("{a}-"),
        Spec::Suffix(n) => format!("-{n}"),
    };
    let [w0, w1, w2, w3] = ows;
    format!("{w0}{unit}{w1}={w2}{body}{w3}")
}

fn spelling() -> impl Strategy<Value = (String, [String; 4])> {
    let ows = || "[ \t]{0,2}|[ \t]{0,1}, ?";
    ("bytes|BYTES|Bytes|bYtEs", [" ?", " ?", ows(), ows()])
}

fn check_decision(decision: RangeDecision, len: u64) -> Result<(), TestCaseError> {
    if let RangeDecision::Partial { start, end } = decision {
        prop_assert!(start <= end && end < len, "{}-{} of {}", start, end, len);
        // Written back out, the range is the same range.
        let again = evaluate_range(Some(&format!("bytes={start}-{end}")), len);
        prop_assert_eq!(again, decision);
    }
    if len == 0 {
        prop_assert_ne!(decision, RangeDecision::Partial { start: 0, end: 0 });
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    fn arbitrary_headers_never_escape_the_file(
        header in prop_oneof![any::<String>(), "[bytesBYTES =,0-9 -]{0,30}"],
        len in file_len(),
    ) {
        case();
        check_decision(evaluate_range(Some(&header), len), len)?;
    }

    fn one_valid_range_gets_the_exact_answer(
        spec in spec(), len in file_len(), (unit, ows) in spelling(),
    ) {
        case();
        let header = spell(&spec, &unit, &ows);
        let decision = evaluate_range(Some(&header), len);
        prop_assert_eq!(decision, model(&spec, len), "{:?} of {}", header, len);
        check_decision(decision, len)?;
    }

    fn several_ranges_or_other_units_send_the_whole_file(
        first in spec(), second in spec(), len in file_len(), unit in "items|byte|bytesx|",
    ) {
        case();
        let both = format!("{},{}", spell(&first, "bytes", &Default::default()),
                           spell(&second, "", &Default::default()).trim_start_matches('='));
        prop_assert_eq!(evaluate_range(Some(&both), len), RangeDecision::Full, "{}", both);
        let other = spell(&first, &unit, &Default::default());
        prop_assert_eq!(evaluate_range(Some(&other), len), RangeDecision::Full, "{}", other);
    }
}

#[test]
fn evaluate_range_stays_in_the_file() {
    counted(
        "evaluate_range arbitrary headers",
        arbitrary_headers_never_escape_the_file,
    );
}

#[test]
fn evaluate_range_matches_the_model() {
    counted(
        "evaluate_range one valid range vs model",
        one_valid_range_gets_the_exact_answer,
    );
}

#[test]
fn evaluate_range_ignores_several_ranges() {
    counted(
        "evaluate_range several ranges, other units",
        several_ranges_or_other_units_send_the_whole_file,
    );
}
