//! `parse_target`: never panics; an accepted target never leaves the root (no `..`, no `.`, no
//! absolute path, no NUL, no separator hidden in a segment); acceptance agrees with a plain
//! reading of its documented rules; valid targets spelled in many ways decode to what was
//! meant; and an accepted target, written back out, parses to the same value.

use std::path::{Component, Path};

use netlab_http::target::percent_encode;
use netlab_http::{parse_target, Target};
use proptest::prelude::*;

use crate::common::{case, config, counted};

/// A forbidden byte inside a decoded segment.
fn forbidden(b: u8) -> bool {
    b == b'/' || b == b'\\' || b < 0x20 || b == 0x7f
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The documented rules, read plainly: origin-form, path up to `?` or `#`, split on `/`, empty
/// segments dropped, each decoded once (`%` and exactly two hex digits), no dot segment, no
/// forbidden byte.
fn reference(raw: &str) -> Option<Target> {
    let path = raw.strip_prefix('/')?;
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let mut segments = Vec::new();
    for piece in path.split('/').filter(|p| !p.is_empty()) {
        let bytes = piece.as_bytes();
        let mut decoded = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let high = hex_value(*bytes.get(i + 1)?)?;
                let low = hex_value(*bytes.get(i + 2)?)?;
                decoded.push(high * 16 + low);
                i += 3;
            } else {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        if decoded == b"." || decoded == b".." || decoded.iter().any(|&b| forbidden(b)) {
            return None;
        }
        segments.push(decoded);
    }
    Some(Target {
        trailing_slash: path.is_empty() || path.ends_with('/'),
        segments,
    })
}

/// An accepted target written back out: each segment percent-encoded.
fn render(target: &Target) -> String {
    let segments: Vec<String> = target.segments.iter().map(|s| percent_encode(s)).collect();
    let mut text = format!("/{}", segments.join("/"));
    if target.trailing_slash && !target.segments.is_empty() {
        text.push('/');
    }
    text
}

fn check_accepted(raw: &str, target: &Target) -> Result<(), TestCaseError> {
    for segment in &target.segments {
        prop_assert!(!segment.is_empty());
        prop_assert!(segment != b"." && segment != b"..");
        prop_assert!(!segment.iter().any(|&b| forbidden(b)), "{:?}", segment);
    }
    // The path, joined to any root, names something beneath it: only plain names.
    let relative = target.relative_path();
    prop_assert!(relative.is_relative());
    if target.segments.is_empty() {
        prop_assert_eq!(relative.as_path(), Path::new("."));
    } else {
        let components: Vec<Component> = relative.components().collect();
        prop_assert_eq!(components.len(), target.segments.len(), "{:?}", relative);
        prop_assert!(components.iter().all(|c| matches!(c, Component::Normal(_))));
        let joined = Path::new("/srv/root").join(&relative);
        prop_assert!(joined.starts_with("/srv/root"));
    }
    // Written back out, it parses to the same target; so does its directory Location.
    prop_assert_eq!(parse_target(&render(target)), Ok(target.clone()), "{}", raw);
    let location = parse_target(&target.directory_location()).unwrap();
    prop_assert_eq!(&location.segments, &target.segments);
    prop_assert!(location.trailing_slash);
    Ok(())
}

/// Segments a client may name: any bytes but the forbidden ones, never `.` or `..`.
fn segment() -> impl Strategy<Value = Vec<u8>> {
    // Drawn from the allowed bytes, not filtered: a million cases would pass proptest's limit
    // on rejected values.
    let allowed: Vec<u8> = (0..=255).filter(|&b| !forbidden(b)).collect();
    let byte = prop::sample::select(allowed);
    prop::collection::vec(byte, 1..10).prop_filter("not a dot segment", |s| s != b"." && s != b"..")
}

/// One byte written either as itself (where that is possible) or `%hh` in either case.
fn spell(byte: u8, escape: bool, upper: bool) -> String {
    let raw_ok = byte.is_ascii_graphic() && !b"%/?#\\".contains(&byte);
    match (raw_ok && !escape, upper) {
        (true, _) => (byte as char).to_string(),
        (false, true) => format!("%{byte:02X}"),
        (false, false) => format!("%{byte:02x}"),
    }
}

/// A valid target with its meaning: extra slashes, escapes chosen at random, maybe a trailing
/// slash, maybe a query or fragment holding anything (even `/../`).
fn spelled_target() -> impl Strategy<Value = (String, Target)> {
    let spelled_segment = segment().prop_flat_map(|s| {
        let n = s.len();
        (
            Just(s),
            prop::collection::vec((any::<bool>(), any::<bool>()), n),
        )
    });
    (
        prop::collection::vec((spelled_segment, 1..3usize), 0..6),
        0..3usize,
        prop::option::of("[?#][ -~]{0,20}"),
    )
        .prop_map(|(segments, trailing, query)| {
            let mut raw = String::new();
            let mut decoded = Vec::new();
            for ((segment, ways), slashes) in segments {
                raw.push_str(&"/".repeat(slashes));
                for (&byte, &(escape, upper)) in segment.iter().zip(&ways) {
                    raw.push_str(&spell(byte, escape, upper));
                }
                decoded.push(segment);
            }
            let trailing_slash = trailing > 0 || decoded.is_empty();
            raw.push_str(&"/".repeat(trailing.max(usize::from(raw.is_empty()))));
            raw.push_str(query.as_deref().unwrap_or_default());
            let target = Target {
                segments: decoded,
                trailing_slash,
            };
            (raw, target)
        })
}

/// Strings made mostly of the characters traversal tricks are made of.
fn tricky() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(
        &[
            "/", "//", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", "%00", "%", "%+1", "%0",
            "a", "%25", "?", "#", "%zz", "é", "%c3%a9", "%7f", "%1f",
        ][..],
    );
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(config())]

    fn arbitrary_targets_keep_the_rules(raw in prop_oneof![any::<String>(), "/[ -~]{0,40}", tricky()]) {
        case();
        let parsed = parse_target(&raw);
        prop_assert_eq!(parsed.clone().ok(), reference(&raw), "{:?}", raw);
        if let Ok(target) = parsed {
            check_accepted(&raw, &target)?;
        }
    }

    fn valid_targets_decode_to_what_was_meant((raw, meant) in spelled_target()) {
        case();
        prop_assert_eq!(parse_target(&raw), Ok(meant.clone()), "{:?}", raw);
        check_accepted(&raw, &meant)?;
    }
}

#[test]
fn parse_target_keeps_its_rules() {
    counted(
        "parse_target arbitrary and tricky strings",
        arbitrary_targets_keep_the_rules,
    );
}

#[test]
fn parse_target_round_trips() {
    counted(
        "parse_target valid targets round-trip",
        valid_targets_decode_to_what_was_meant,
    );
}
