//! `conditional`: never panics on any header value; entity-tags and tag lists round-trip; the
//! ETag tells files apart; and the decisions follow RFC 9110 §13 for generated requests:
//! If-None-Match over If-Modified-Since, 304 only for GET and HEAD, If-Range only on a strong
//! match or the exact, settled date. Chunked framing decodes back to what was framed.

use std::time::{Duration, SystemTime};

use netlab_http::conditional::{
    chunk, decode_chunked, evaluate_preconditions, range_applies, Conditions, EntityTag,
    Precondition, TagList, Validators, LAST_CHUNK,
};
use proptest::prelude::*;

use crate::common::{case, config, counted, INTERESTING};

fn opaque() -> impl Strategy<Value = String> {
    // etagc: 0x21, 0x23-0x7E, obs-text (here: any non-ASCII character).
    "[!#-~\u{80}-\u{10ffff}]{0,12}"
}

fn entity_tag() -> impl Strategy<Value = EntityTag> {
    (any::<bool>(), opaque()).prop_map(|(weak, opaque)| EntityTag { weak, opaque })
}

/// A file as `Validators::new` sees it: inode, size, mtime, and how long ago it changed.
fn file() -> impl Strategy<Value = Validators> {
    let age = prop_oneof![0u64..3_000, 1_000u64..10_000_000];
    (
        any::<u64>(),
        any::<u64>(),
        0i64..253_402_300_000,
        0i64..1_000_000_000,
        age,
    )
        .prop_map(|(inode, size, sec, nsec, age_ms)| {
            let mtime = SystemTime::UNIX_EPOCH + Duration::new(sec as u64, nsec as u32);
            let now = mtime + Duration::from_millis(age_ms);
            Validators::new(inode, size, sec, nsec, now)
        })
}

/// Inode, size, mtime seconds and nanoseconds; small ranges too, so that two draws can agree.
fn stamp() -> impl Strategy<Value = (u64, u64, i64, i64)> {
    let small = (0u64..4, 0u64..4, 0i64..4, 0i64..4);
    let any = (
        any::<u64>(),
        any::<u64>(),
        0i64..253_402_300_000,
        0i64..1_000_000_000,
    );
    prop_oneof![small, any]
}

fn http_date(seconds: i64) -> String {
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds as u64))
}

/// A list of other tags with `own` (weak or strong) put in at `at`, spelled with OWS and
/// empty elements.
fn list_with(own: Option<EntityTag>, others: &[EntityTag], at: usize, sep: &str) -> String {
    let mut tags: Vec<String> = others.iter().map(ToString::to_string).collect();
    if let Some(own) = own {
        tags.insert(at.min(tags.len()), own.to_string());
    }
    tags.join(sep)
}

fn any_value() -> impl Strategy<Value = String> {
    let interesting = prop::collection::vec(prop::sample::select(INTERESTING), 0..40)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned());
    prop_oneof![
        any::<String>(),
        interesting,
        "(W/)?\"[ -~]{0,10}\"?[ ,]{0,3}"
    ]
}

fn any_conditions() -> impl Strategy<Value = Conditions> {
    let field = || prop::option::of(any_value());
    (field(), field(), field(), field(), field()).prop_map(|(a, b, c, d, e)| Conditions {
        if_match: a,
        if_none_match: b,
        if_modified_since: c,
        if_unmodified_since: d,
        if_range: e,
    })
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["GET", "HEAD", "POST", "PUT", "DELETE", "get"][..])
}

proptest! {
    #![proptest_config(config())]

    fn tags_and_lists_round_trip(tags in prop::collection::vec(entity_tag(), 0..6),
                                 sep in "[ \t]{0,2},[ \t]{0,2}(,[ \t]{0,1}){0,2}") {
        case();
        for tag in &tags {
            prop_assert_eq!(EntityTag::parse(&tag.to_string()), Some(tag.clone()));
        }
        let list = list_with(None, &tags, 0, &sep);
        prop_assert_eq!(TagList::parse(&list), Some(TagList::Tags(tags)), "{:?}", list);
    }

    fn never_panics_and_parsed_tags_round_trip(c in any_conditions(), file in file(),
                                               method in method()) {
        case();
        let decision = evaluate_preconditions(method, &c, &file);
        if decision == Precondition::NotModified {
            prop_assert!(method == "GET" || method == "HEAD");
        }
        range_applies(&c, &file);
        if let Some(TagList::Tags(tags)) = c.if_none_match.as_deref().and_then(TagList::parse) {
            let again = list_with(None, &tags, 0, ", ");
            prop_assert_eq!(TagList::parse(&again), Some(TagList::Tags(tags)));
        }
    }

    fn etags_tell_files_apart(a in stamp(), change in 0..5usize, b in stamp(), age in 0u64..5_000) {
        case();
        // b: a with one of its four numbers replaced (or none, when change is 4).
        let mut b_parts = a;
        match change {
            0 => b_parts.0 = b.0,
            1 => b_parts.1 = b.1,
            2 => b_parts.2 = b.2,
            3 => b_parts.3 = b.3,
            _ => {}
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(a.2 as u64 + age / 1000);
        let tag = |(inode, size, sec, nsec): (u64, u64, i64, i64)| {
            Validators::new(inode, size, sec, nsec, now).etag
        };
        let (ta, tb) = (tag(a), tag(b_parts));
        prop_assert_eq!(EntityTag::parse(&ta.to_string()), Some(ta.clone()));
        // The same opaque text exactly when inode, size and mtime (to the ns) are the same.
        prop_assert_eq!(ta.opaque == tb.opaque, a == b_parts, "{} {}", ta, tb);
    }

    fn if_none_match_wins_and_means_304_for_get_and_head(
        file in file(), others in prop::collection::vec(entity_tag(), 0..4),
        at in 0..5usize, weak_copy in any::<bool>(), present in any::<bool>(),
        since in 0i64..253_402_300_000, method in method(),
    ) {
        case();
        let own = EntityTag { weak: weak_copy || file.etag.weak, opaque: file.etag.opaque.clone() };
        let others: Vec<_> = others.into_iter().filter(|t| t.opaque != own.opaque).collect();
        let c = Conditions {
            if_none_match: Some(list_with(present.then_some(own), &others, at, ", ")),
            // Whatever this date says, If-None-Match decides (RFC 9110 §13.2.2 step 3).
            if_modified_since: Some(http_date(since)),
            ..Conditions::default()
        };
        let expected = match (present, method) {
            (false, _) => Precondition::Proceed,
            (true, "GET" | "HEAD") => Precondition::NotModified,
            (true, _) => Precondition::Failed,
        };
        prop_assert_eq!(evaluate_preconditions(method, &c, &file), expected);
    }

    fn if_modified_since_alone(file in file(), since in 0i64..253_402_300_000,
                               method in method()) {
        case();
        let c = Conditions { if_modified_since: Some(http_date(since)), ..Conditions::default() };
        let unchanged = file.last_modified <= since && (method == "GET" || method == "HEAD");
        let expected = if unchanged { Precondition::NotModified } else { Precondition::Proceed };
        prop_assert_eq!(evaluate_preconditions(method, &c, &file), expected);
    }

    fn if_range_needs_a_strong_match_or_the_settled_date(
        file in file(), other in entity_tag(), date_offset in -2i64..=2, use_tag in any::<bool>(),
    ) {
        case();
        let date = (file.last_modified + date_offset).max(0);
        let value = if use_tag { file.etag.to_string() } else { http_date(date) };
        let c = Conditions { if_range: Some(value.clone()), ..Conditions::default() };
        let settled = !file.etag.weak;
        let exact = use_tag || date == file.last_modified;
        prop_assert_eq!(range_applies(&c, &file), settled && exact, "{}", value);
        let c = Conditions { if_range: Some(other.to_string()), ..Conditions::default() };
        prop_assert_eq!(range_applies(&c, &file), other.strong_eq(&file.etag));
    }

    fn chunked_bodies_decode_to_what_was_framed(
        pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
        tail in prop::collection::vec(any::<u8>(), 0..20),
        noise in prop::collection::vec(prop::sample::select(INTERESTING), 0..60),
    ) {
        case();
        let mut body: Vec<u8> = pieces.iter().flat_map(|p| chunk(p)).collect();
        body.extend_from_slice(LAST_CHUNK);
        let framed = body.len();
        body.extend_from_slice(&tail);
        prop_assert_eq!(decode_chunked(&body), Some((pieces.concat(), framed)));
        // Anything at all: no panic, and never more data than bytes used.
        if let Some((data, used)) = decode_chunked(&noise) {
            prop_assert!(data.len() < used && used <= noise.len());
        }
        prop_assert_eq!(decode_chunked(&body[..framed - 1]), None);
    }
}

#[test]
fn conditional_tags_round_trip() {
    counted(
        "conditional tags and lists round-trip",
        tags_and_lists_round_trip,
    );
}

#[test]
fn conditional_never_panics() {
    counted(
        "conditional arbitrary header values",
        never_panics_and_parsed_tags_round_trip,
    );
}

#[test]
fn conditional_etags_are_distinct() {
    counted("conditional ETag per file", etags_tell_files_apart);
}

#[test]
fn conditional_if_none_match() {
    counted(
        "conditional If-None-Match over If-Modified-Since",
        if_none_match_wins_and_means_304_for_get_and_head,
    );
}

#[test]
fn conditional_if_modified_since() {
    counted(
        "conditional If-Modified-Since alone",
        if_modified_since_alone,
    );
}

#[test]
fn conditional_if_range() {
    counted(
        "conditional If-Range",
        if_range_needs_a_strong_match_or_the_settled_date,
    );
}

#[test]
fn conditional_chunked() {
    counted(
        "conditional chunked framing",
        chunked_bodies_decode_to_what_was_framed,
    );
}
