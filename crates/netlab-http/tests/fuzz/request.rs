//! `parse_head`: never panics, accepts exactly the grammar it documents (checked against a
//! second, grammar-first reading of RFC 9112 below), round-trips what it accepts, and holds its
//! limits: nothing longer than MAX_REQUEST_LINE, MAX_HEAD or MAX_HEADERS is accepted, and it
//! never asks for more bytes once a limit is passed.

use netlab_http::request::{MAX_HEAD, MAX_HEADERS, MAX_REQUEST_LINE};
use netlab_http::{parse_head, Parsed, Version};
use proptest::prelude::*;

use crate::common::{case, config, counted, INTERESTING};

/// What `parse_head` said, in a form two readings can be compared in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Incomplete,
    Complete {
        method: String,
        target: String,
        version: Version,
        headers: Vec<(String, String)>,
        used: usize,
    },
    Error(u16),
}

fn outcome(parsed: Parsed) -> Outcome {
    match parsed {
        Parsed::Incomplete => Outcome::Incomplete,
        Parsed::Complete(r, used) => Outcome::Complete {
            method: r.method,
            target: r.target,
            version: r.version,
            headers: r.headers,
            used,
        },
        Parsed::Error(status) => Outcome::Error(status),
    }
}

// The grammar, read straight from RFC 9110 §5.6.2 and RFC 9112 §2-5, for heads under the limits.

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A field value's bytes: VCHAR, obs-text, SP and HTAB; nothing else (RFC 9110 §5.5).
fn is_field_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80 || b == b' ' || b == b'\t'
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The second reading: a head below the size limits, checked line by line.
fn reference(buf: &[u8]) -> Outcome {
    let skip = buf
        .iter()
        .take(8)
        .take_while(|b| b"\r\n".contains(b))
        .count();
    let head = &buf[skip..];
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(nl) = head[pos..].iter().position(|&b| b == b'\n') else {
            return Outcome::Incomplete;
        };
        let line = &head[pos..pos + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += nl + 1;
        // An empty line ends the head, but not in the request line's place.
        if line.is_empty() && !lines.is_empty() {
            break;
        }
        lines.push(line);
    }
    let parts: Vec<&[u8]> = lines[0].split(|&b| b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return Outcome::Error(400);
    };
    if !is_token(method) || target.is_empty() || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Outcome::Error(400);
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            return Outcome::Error(505)
        }
        _ => return Outcome::Error(400),
    };
    let mut headers = Vec::new();
    for line in &lines[1..] {
        if headers.len() == MAX_HEADERS {
            return Outcome::Error(431);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Outcome::Error(400);
        };
        let value = trim_ows(&line[colon + 1..]);
        if !is_token(&line[..colon]) || !value.iter().all(|&b| is_field_byte(b)) {
            return Outcome::Error(400);
        }
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        headers.push((text(&line[..colon]), text(value)));
    }
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
    };
    let hosts = named("host").count();
    if hosts > 1 || (version == Version::Http11 && hosts == 0) {
        return Outcome::Error(400);
    }
    // RFC 9112 §6.3: a Content-Length that is not one number is an unrecoverable error.
    let mut lengths = named("content-length").map(|(_, v)| v.as_str());
    if let Some(first) = lengths.next() {
        let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
        if !digits(first) || lengths.any(|v| v != first) {
            return Outcome::Error(400);
        }
    }
    Outcome::Complete {
        method: String::from_utf8_lossy(method).into_owned(),
        target: String::from_utf8_lossy(target).into_owned(),
        version,
        headers,
        used: skip + pos,
    }
}

// Generators of heads that must be accepted.

/// One valid head: its parts, and how it is spelled.
#[derive(Debug, Clone)]
struct Head {
    leading: Vec<&'static str>,
    method: String,
    target: String,
    version: Version,
    /// Name, value (already trimmed), OWS before and after the value, CRLF or bare LF.
    headers: Vec<(String, String, String, String, bool)>,
    crlf_request_line: bool,
    crlf_end: bool,
}

impl Head {
    fn render(&self) -> Vec<u8> {
        let eol = |crlf: bool| if crlf { "\r\n" } else { "\n" };
        let version = match self.version {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        };
        let mut text = self.leading.concat();
        text += &format!("{} {} {version}", self.method, self.target);
        text += eol(self.crlf_request_line);
        for (name, value, before, after, crlf) in &self.headers {
            text += &format!("{name}:{before}{value}{after}{}", eol(*crlf));
        }
        text += eol(self.crlf_end);
        text.into_bytes()
    }

    fn expected(&self) -> Outcome {
        Outcome::Complete {
            method: self.method.clone(),
            target: self.target.clone(),
            version: self.version,
            headers: self
                .headers
                .iter()
                .map(|h| (h.0.clone(), h.1.clone()))
                .collect(),
            used: self.render().len(),
        }
    }
}

const TOKEN: &str = "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}";

fn method() -> impl Strategy<Value = String> {
    prop_oneof![Just("GET".to_owned()), Just("HEAD".to_owned()), TOKEN]
}

fn field_value() -> impl Strategy<Value = String> {
    // Starts and ends with a visible character (or is empty); SP and HTAB only inside.
    let visible = "[!-~\u{80}-\u{10ffff}]";
    prop_oneof![
        Just(String::new()),
        proptest::string::string_regex(&format!(
            "{visible}([ \t!-~\u{80}-\u{10ffff}]{{0,30}}{visible})?"
        ))
        .unwrap()
    ]
}

fn header_line(
    name: impl Strategy<Value = String>,
    value: impl Strategy<Value = String>,
) -> impl Strategy<Value = (String, String, String, String, bool)> {
    (name, value, "[ \t]{0,3}", "[ \t]{0,3}", any::<bool>())
}

fn other_header() -> impl Strategy<Value = (String, String, String, String, bool)> {
    let name = TOKEN.prop_filter("Host and Content-Length are placed on purpose", |n| {
        !n.eq_ignore_ascii_case("host") && !n.eq_ignore_ascii_case("content-length")
    });
    header_line(name, field_value())
}

/// A valid head with `extra` other headers (plus Host, and maybe Content-Length).
fn head_with(extra: std::ops::Range<usize>) -> impl Strategy<Value = Head> {
    let leading = prop::collection::vec(prop_oneof![Just("\r\n"), Just("\n")], 0..=4);
    let version = prop_oneof![Just(Version::Http11), Just(Version::Http10)];
    let host = header_line("Host|host|HOST", field_value());
    let length = header_line("Content-Length", "[0-9]{1,6}");
    (
        (leading, method(), "/[!-~]{0,40}", version),
        prop::collection::vec(other_header(), extra),
        (
            prop::option::of(host),
            prop::option::of(length),
            any::<prop::sample::Index>(),
        ),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |((leading, method, target, version), mut headers, placed, eols)| {
                let (host, length, at) = placed;
                // HTTP/1.1 needs exactly one Host; 1.0 may have one.
                let host = host.filter(|_| version == Version::Http10).or_else(|| {
                    (version == Version::Http11)
                        .then(|| ("Host".into(), "x".into(), " ".into(), String::new(), true))
                });
                for placed in [host, length].into_iter().flatten() {
                    let index = at.index(headers.len() + 1);
                    headers.insert(index, placed);
                }
                Head {
                    leading,
                    method,
                    target,
                    version,
                    headers,
                    crlf_request_line: eols.0,
                    crlf_end: eols.1,
                }
            },
        )
}

/// A valid head, then a few bytes replaced, inserted or deleted.
fn mutated_head() -> impl Strategy<Value = Vec<u8>> {
    let edit = (
        any::<prop::sample::Index>(),
        0..3u8,
        prop::sample::select(INTERESTING),
    );
    // Sometimes a second Content-Length, right after the request line.
    let length = prop::option::of("[0-9]{1,2}|-1| ");
    let edits = prop::collection::vec(edit, 0..4);
    (head_with(0..6), edits, length).prop_map(|(head, edits, length)| {
        let mut bytes = head.render();
        if let Some(length) = length {
            let at = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
            let line = format!("Content-Length: {length}\r\n");
            bytes.splice(at..at, line.into_bytes());
        }
        for (at, kind, byte) in edits {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => bytes[i] = byte,
                _ if i < bytes.len() => drop(bytes.remove(i)),
                _ => bytes.push(byte),
            }
        }
        bytes
    })
}

fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        prop::collection::vec(prop::sample::select(INTERESTING), 0..512),
        prop::collection::vec(any::<u8>(), MAX_HEAD - 64..MAX_HEAD + 64),
    ]
}

/// What must hold for any input at all.
fn check_contract(buf: &[u8]) -> Result<(), TestCaseError> {
    let skip = buf
        .iter()
        .take(8)
        .take_while(|b| b"\r\n".contains(b))
        .count();
    match parse_head(buf) {
        Parsed::Incomplete => {
            // Never waits for more once the buffered head is past a limit.
            prop_assert!(buf.len() - skip <= MAX_HEAD);
            let first_line = buf[skip..].iter().position(|&b| b == b'\n');
            prop_assert!(first_line.unwrap_or(buf.len() - skip) <= MAX_REQUEST_LINE);
        }
        Parsed::Error(status) => prop_assert!([400, 414, 431, 505].contains(&status)),
        Parsed::Complete(request, used) => {
            prop_assert!(used <= buf.len());
            let head = &buf[skip..used];
            prop_assert!(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"));
            prop_assert!(head.len() <= MAX_HEAD);
            let line_end = head.iter().position(|&b| b == b'\n').unwrap();
            prop_assert!(line_end <= MAX_REQUEST_LINE);
            prop_assert!(request.headers.len() <= MAX_HEADERS);
            prop_assert!(is_token(request.method.as_bytes()));
            prop_assert!(!request.target.is_empty());
            prop_assert!(request.target.bytes().all(|b| b.is_ascii_graphic()));
            for (name, value) in &request.headers {
                prop_assert!(is_token(name.as_bytes()), "{name:?}");
                prop_assert!(value.bytes().all(is_field_byte), "{value:?}");
                prop_assert_eq!(trim_ows(value.as_bytes()), value.as_bytes());
            }
            // The head alone decides: the bytes behind it (the next request) do not matter.
            prop_assert_eq!(outcome(parse_head(&buf[..used])), outcome(parse_head(buf)));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    fn never_panics_and_keeps_its_contract(buf in arbitrary_bytes()) {
        case();
        check_contract(&buf)?;
    }

    fn agrees_with_the_grammar_on_damaged_heads(buf in mutated_head()) {
        case();
        check_contract(&buf)?;
        prop_assert_eq!(outcome(parse_head(&buf)), reference(&buf), "{}", buf.escape_ascii());
    }

    fn valid_heads_round_trip(head in head_with(0..12), tail in arbitrary_bytes(),
                              cuts in prop::collection::vec(any::<prop::sample::Index>(), 4)) {
        case();
        let bytes = head.render();
        prop_assert_eq!(outcome(parse_head(&bytes)), head.expected());
        // Rendered again from what was parsed, the head parses to the same request.
        let Parsed::Complete(request, _) = parse_head(&bytes) else { unreachable!() };
        let again = Head {
            leading: vec![],
            method: request.method.clone(),
            target: request.target.clone(),
            version: request.version,
            headers: request.headers.iter()
                .map(|(n, v)| (n.clone(), v.clone(), " ".into(), String::new(), true))
                .collect(),
            crlf_request_line: true,
            crlf_end: true,
        };
        let Outcome::Complete { headers, .. } = outcome(parse_head(&again.render())) else {
            return Err(TestCaseError::fail("the re-rendered head was refused"));
        };
        prop_assert_eq!(headers, request.headers);
        // Whatever follows is the next request's; every strict prefix is not yet a head.
        let mut followed = bytes.clone();
        followed.extend_from_slice(&tail);
        prop_assert_eq!(outcome(parse_head(&followed)), head.expected());
        for cut in cuts {
            let prefix = &bytes[..cut.index(bytes.len())];
            prop_assert_eq!(outcome(parse_head(prefix)), Outcome::Incomplete);
        }
    }

    fn limits_hold_at_their_edges(head in head_with(0..3), delta in -3i64..=3,
                                  which in 0..3u8) {
        case();
        let mut head = head;
        let edge = |base: usize, limit: usize| (limit as i64 + delta) as usize - base;
        let (bytes, expect_refused, status) = match which {
            // The request line: `line_end` is the index of its LF.
            0 => {
                head.leading.clear();
                head.target = "/".to_owned();
                let base = head.render().iter().position(|&b| b == b'\n').unwrap();
                head.target.push_str(&"a".repeat(edge(base, MAX_REQUEST_LINE)));
                (head.render(), delta > 0, 414)
            }
            // The whole head, one long header making it `MAX_HEAD + delta` bytes.
            1 => {
                head.leading.clear();
                head.target = "/".to_owned();
                let filler = ("X".to_owned(), "v".to_owned(), String::new(), String::new(), true);
                head.headers.push(filler);
                let base = head.render().len();
                head.headers.last_mut().unwrap().1.push_str(&"v".repeat(edge(base, MAX_HEAD)));
                (head.render(), delta > 0, 431)
            }
            // The number of header lines.
            _ => {
                head.headers.retain(|h| h.0.eq_ignore_ascii_case("host"));
                let count = (MAX_HEADERS as i64 + delta) as usize - head.headers.len();
                for i in 0..count {
                    let line = (format!("X-{i}"), "v".into(), String::new(), String::new(), true);
                    head.headers.push(line);
                }
                (head.render(), delta > 0, 431)
            }
        };
        let parsed = outcome(parse_head(&bytes));
        if expect_refused {
            prop_assert_eq!(parsed, Outcome::Error(status));
        } else {
            prop_assert!(matches!(parsed, Outcome::Complete { .. }), "{:?}", parsed);
        }
        // Cut before its end, a head past the limit is refused as soon as the limit is passed.
        let limit = if which == 0 { MAX_REQUEST_LINE } else { MAX_HEAD };
        let cut = &bytes[..bytes.len().min(limit + 1)];
        if which < 2 && expect_refused && cut.len() < bytes.len() {
            prop_assert_eq!(outcome(parse_head(cut)), Outcome::Error(status));
        }
    }
}

#[test]
fn parse_head_never_panics_on_arbitrary_bytes() {
    counted(
        "parse_head arbitrary bytes",
        never_panics_and_keeps_its_contract,
    );
}

#[test]
fn parse_head_agrees_with_the_grammar() {
    counted(
        "parse_head damaged heads vs grammar",
        agrees_with_the_grammar_on_damaged_heads,
    );
}

#[test]
fn parse_head_round_trips() {
    counted("parse_head valid heads round-trip", valid_heads_round_trip);
}

#[test]
fn parse_head_limits() {
    counted("parse_head limits", limits_hold_at_their_edges);
}
