//! Conditional requests (RFC 9110 §13): the file's validators, `If-None-Match`,
//! `If-Modified-Since`, `If-Match`, `If-Unmodified-Since`, `If-Range`; and chunked framing for
//! a body whose length is not known up front (RFC 9112 §7.1).
//!
//! **The ETag** is `"INODE-SIZE-SECONDS.NANOSECONDS"` of the file (hex), and it is **strong**
//! (RFC 9110 §8.8.1: a strong validator changes whenever the representation data changes)
//! unless the file was modified less than [`SETTLE`] ago, when it is sent weak (`W/"..."`),
//! Apache's rule. Why the exception: the kernel stamps mtime from a clock that ticks once a
//! jiffy (1-10 ms), so two same-size writes within one tick can leave all three numbers as they
//! were. Linux 6.13+ hands out a fine-grained stamp to the next change once someone has looked
//! at the inode (multigrain timestamps; on this machine, ext4, 2000 of 2000 write/stat/write
//! pairs got different `st_mtime_nsec`), but not every filesystem does, and nothing says the
//! file is not being written right now. A second later, any change moves the mtime. A weak tag
//! still answers `If-None-Match` (weak comparison), never `If-Range` (strong comparison only),
//! so a range is never stitched from two versions of a file.
//!
//! `Last-Modified` counts whole seconds, so it is the weaker validator; `If-None-Match`
//! overrides `If-Modified-Since` (§13.2.2), and a date in `If-Range` must equal it exactly and
//! be settled too (§13.1.5, §8.8.2.2).

use std::fmt;
use std::time::{Duration, SystemTime};

use nix::sys::stat::FileStat;

use crate::Request;

/// How long after its last change a file's validators count as strong.
pub const SETTLE: Duration = Duration::from_secs(1);

/// An entity tag (RFC 9110 §8.8.3): `"opaque"` or `W/"opaque"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    pub weak: bool,
    /// The characters between the quotes (`etagc`: 0x21, 0x23-0x7E, 0x80-0xFF).
    pub opaque: String,
}

impl EntityTag {
    /// §8.8.3.2 strong comparison: both strong, same characters.
    pub fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// §8.8.3.2 weak comparison: same characters, either may be weak.
    pub fn weak_eq(&self, other: &EntityTag) -> bool {
        self.opaque == other.opaque
    }

    /// Parses exactly one entity-tag (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Option<EntityTag> {
        match parse_tag(text.trim_matches([' ', '\t'])) {
            Some((tag, "")) => Some(tag),
            _ => None,
        }
    }
}

/// `"opaque"` or `W/"opaque"`, as it goes in an `ETag` header.
impl fmt::Display for EntityTag {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let weak = if self.weak { "W/" } else { "" };
        write!(f, "{weak}\"{}\"", self.opaque)
    }
}

/// One entity-tag at the start of `text`, and the rest of `text` after it.
fn parse_tag(text: &str) -> Option<(EntityTag, &str)> {
    let (weak, quoted) = match text.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let inner = quoted.strip_prefix('"')?;
    let end = inner.find('"')?;
    let opaque = &inner[..end];
    let is_etagc = |b: u8| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80;
    if !opaque.bytes().all(is_etagc) {
        return None;
    }
    let tag = EntityTag {
        weak,
        opaque: opaque.to_owned(),
    };
    Some((tag, &inner[end + 1..]))
}

/// `If-Match` / `If-None-Match` (§13.1.1, §13.1.2): `*` or a comma list of entity-tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagList {
    Any,
    Tags(Vec<EntityTag>),
}

impl TagList {
    /// `None` if the value is not `*` or a list of entity-tags (empty elements are allowed,
    /// §5.6.1). A comma can sit inside a tag, so the list is scanned, not split.
    pub fn parse(value: &str) -> Option<TagList> {
        let ows = [' ', '\t'];
        if value.trim_matches(ows) == "*" {
            return Some(TagList::Any);
        }
        let mut tags = Vec::new();
        let mut rest = value.trim_start_matches(ows);
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix(',') {
                rest = after.trim_start_matches(ows);
                continue;
            }
            let (tag, after) = parse_tag(rest)?;
            tags.push(tag);
            rest = after.trim_start_matches(ows);
            if !rest.is_empty() && !rest.starts_with(',') {
                return None;
            }
        }
        Some(TagList::Tags(tags))
    }
}

/// What a file offers to compare against: its ETag and `Last-Modified` (seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    pub etag: EntityTag,
    /// The `Last-Modified` time, whole seconds since the epoch.
    pub last_modified: i64,
}

impl Validators {
    /// From an inode number, a size and an mtime, looked at `now`.
    pub fn new(inode: u64, size: u64, mtime_sec: i64, mtime_nsec: i64, now: SystemTime) -> Self {
        let mtime = epoch_offset(mtime_sec, mtime_nsec);
        let settled = now
            .checked_sub(SETTLE)
            .is_some_and(|settled_before| mtime <= settled_before);
        let etag = EntityTag {
            weak: !settled,
            opaque: format!("{inode:x}-{size:x}-{mtime_sec:x}.{mtime_nsec:08x}"),
        };
        Validators {
            etag,
            last_modified: mtime_sec,
        }
    }

    /// From the `fstat` of the open file (the same one that is sent).
    pub fn of_file(stat: &FileStat, now: SystemTime) -> Self {
        let size = stat.st_size.max(0) as u64;
        Validators::new(stat.st_ino, size, stat.st_mtime, stat.st_mtime_nsec, now)
    }

    /// `Last-Modified` is strong (§8.8.2.2) exactly when the ETag is.
    fn date_is_strong(&self) -> bool {
        !self.etag.weak
    }
}

fn epoch_offset(sec: i64, nsec: i64) -> SystemTime {
    let nanos = Duration::from_nanos(nsec.clamp(0, 999_999_999) as u64);
    match u64::try_from(sec) {
        Ok(sec) => SystemTime::UNIX_EPOCH + Duration::from_secs(sec) + nanos,
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + nanos,
    }
}

/// A date field's seconds since the epoch; `None` unless it is one valid HTTP-date (§5.6.7).
fn http_date_seconds(value: &str) -> Option<i64> {
    let time = httpdate::parse_http_date(value.trim_matches([' ', '\t'])).ok()?;
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).ok(),
        Err(before) => i64::try_from(before.duration().as_secs()).ok().map(|s| -s),
    }
}

/// The request's conditional header fields, several lines of one field joined with `, `.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub if_unmodified_since: Option<String>,
    pub if_range: Option<String>,
}

impl Conditions {
    pub fn from_request(request: &Request) -> Conditions {
        let field = |name: &str| {
            let values: Vec<&str> = request
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        Conditions {
            if_match: field("if-match"),
            if_none_match: field("if-none-match"),
            if_modified_since: field("if-modified-since"),
            if_unmodified_since: field("if-unmodified-since"),
            if_range: field("if-range"),
        }
    }
}

/// What the preconditions say (§13.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Go on: answer the request as if it had no preconditions (then look at `Range`).
    Proceed,
    /// 304 Not Modified (GET and HEAD only).
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// RFC 9110 §13.2.2, steps 1-4, in its order: `If-Match`, else `If-Unmodified-Since`; then
/// `If-None-Match`, else `If-Modified-Since` (GET and HEAD only). A list that does not parse
/// matches nothing, the conservative reading: a bad `If-Match` fails, a bad `If-None-Match`
/// sends the file. A date that does not parse is ignored (§13.1.3, §13.1.4).
pub fn evaluate_preconditions(method: &str, c: &Conditions, file: &Validators) -> Precondition {
    let get_or_head = method == "GET" || method == "HEAD";
    // §13.1.1: If-Match uses strong comparison.
    if let Some(value) = &c.if_match {
        let holds = match TagList::parse(value) {
            Some(TagList::Any) => true,
            Some(TagList::Tags(tags)) => tags.iter().any(|t| t.strong_eq(&file.etag)),
            None => false,
        };
        if !holds {
            return Precondition::Failed;
        }
    } else if let Some(date) = c.if_unmodified_since.as_deref().and_then(http_date_seconds) {
        if file.last_modified > date {
            return Precondition::Failed;
        }
    }
    // §13.1.2: If-None-Match uses weak comparison; it is false when a tag matches.
    if let Some(value) = &c.if_none_match {
        let matched = match TagList::parse(value) {
            Some(TagList::Any) => true,
            Some(TagList::Tags(tags)) => tags.iter().any(|t| t.weak_eq(&file.etag)),
            None => false,
        };
        if matched {
            return if get_or_head {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if get_or_head {
        // §13.1.3: not modified when Last-Modified is at or before the date.
        if let Some(date) = c.if_modified_since.as_deref().and_then(http_date_seconds) {
            if file.last_modified <= date {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// §13.1.5: should a `Range` be honoured? Yes without `If-Range`; with it, only if it names
/// this version: an entity-tag by strong comparison, or an HTTP-date equal to `Last-Modified`
/// (and settled). Otherwise the answer is 200 with the whole file. Anything else in the field
/// (a list, junk) is false too: a whole file is always a correct answer.
pub fn range_applies(c: &Conditions, file: &Validators) -> bool {
    let Some(value) = c.if_range.as_deref() else {
        return true;
    };
    // §13.1.5: "examining the first three characters for a DQUOTE".
    if value
        .trim_start_matches([' ', '\t'])
        .bytes()
        .take(3)
        .any(|b| b == b'"')
    {
        return EntityTag::parse(value).is_some_and(|t| t.strong_eq(&file.etag));
    }
    file.date_is_strong() && http_date_seconds(value) == Some(file.last_modified)
}

// Chunked framing (RFC 9112 §7.1): each chunk is its size in hex, CRLF, the bytes, CRLF; a
// chunk of size zero and an empty trailer section end the body.

/// The line before a chunk of `len` bytes: `1a3\r\n`. `len` must not be 0 (that line ends the
/// body: send [`LAST_CHUNK`] instead).
pub fn chunk_head(len: usize) -> String {
    debug_assert!(len > 0, "a zero-size chunk ends the body");
    format!("{len:x}\r\n")
}

/// What follows a chunk's bytes.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk and an empty trailer section: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// One whole chunk, framed; empty `data` gives nothing (an empty chunk would end the body).
pub fn chunk(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut framed = chunk_head(data.len()).into_bytes();
    framed.extend_from_slice(data);
    framed.extend_from_slice(CHUNK_END);
    framed
}

/// Decodes a complete chunked body (for tests and clients): the data, and how many bytes of
/// `body` it used. Chunk extensions (`;name=value`) are skipped; trailer fields must be
/// absent. `None` if the framing is wrong or incomplete.
pub fn decode_chunked(body: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut data = Vec::new();
    let mut pos = 0;
    loop {
        let line_len = body[pos..].windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&body[pos..pos + line_len]).ok()?;
        let size_text = line.split(';').next()?.trim_end_matches([' ', '\t']);
        if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let size = usize::from_str_radix(size_text, 16).ok()?;
        pos += line_len + 2;
        if size == 0 {
            return body[pos..].starts_with(b"\r\n").then_some((data, pos + 2));
        }
        let chunk = body.get(pos..pos.checked_add(size)?)?;
        data.extend_from_slice(chunk);
        pos += size;
        body.get(pos..pos + 2).filter(|end| *end == CHUNK_END)?;
        pos += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Precondition::*;

    fn tag(text: &str) -> EntityTag {
        EntityTag::parse(text).unwrap()
    }

    /// A file last changed at 784111777 (Sun, 06 Nov 1994 08:49:37 GMT), looked at `age` later.
    fn file(age: Duration) -> Validators {
        let mtime = SystemTime::UNIX_EPOCH + Duration::new(784111777, 5);
        Validators::new(0x1f, 10, 784111777, 5, mtime + age)
    }

    fn conditions(name: &str, value: &str) -> Conditions {
        let mut c = Conditions::default();
        let field = match name {
            "if-match" => &mut c.if_match,
            "if-none-match" => &mut c.if_none_match,
            "if-modified-since" => &mut c.if_modified_since,
            "if-unmodified-since" => &mut c.if_unmodified_since,
            _ => &mut c.if_range,
        };
        *field = Some(value.to_owned());
        c
    }

    #[test]
    fn entity_tags_and_the_comparison_table_of_rfc_9110_8_8_3_2() {
        assert_eq!(tag(r#""xyzzy""#).to_string(), r#""xyzzy""#);
        assert_eq!(tag(r#" W/"xyzzy" "#).to_string(), r#"W/"xyzzy""#);
        assert_eq!(tag(r#""""#).opaque, "");
        for bad in [r#"xyzzy"#, r#""a"b""#, r#"w/"a""#, r#""a b""#, r#""a"#, ""] {
            assert_eq!(EntityTag::parse(bad), None, "{bad}");
        }
        // (tag 1, tag 2, strong comparison, weak comparison)
        for (a, b, strong, weak) in [
            (r#"W/"1""#, r#"W/"1""#, false, true),
            (r#"W/"1""#, r#"W/"2""#, false, false),
            (r#"W/"1""#, r#""1""#, false, true),
            (r#""1""#, r#""1""#, true, true),
        ] {
            assert_eq!(tag(a).strong_eq(&tag(b)), strong, "{a} {b}");
            assert_eq!(tag(a).weak_eq(&tag(b)), weak, "{a} {b}");
        }
    }

    #[test]
    fn tag_lists_of_rfc_9110_13_1_2() {
        let list = TagList::parse(r#""xyzzy", "r2d2xxxx", "c3piozzzz""#).unwrap();
        assert_eq!(
            list,
            TagList::Tags(vec![
                tag(r#""xyzzy""#),
                tag(r#""r2d2xxxx""#),
                tag(r#""c3piozzzz""#)
            ])
        );
        assert_eq!(TagList::parse(" * "), Some(TagList::Any));
        assert_eq!(
            TagList::parse(r#", W/"a,b" ,,"c""#),
            Some(TagList::Tags(vec![tag(r#"W/"a,b""#), tag(r#""c""#)]))
        );
        assert_eq!(TagList::parse(""), Some(TagList::Tags(vec![])));
        for bad in [r#""a" "b""#, r#""a", *"#, "xyzzy", r#""a"x"#] {
            assert_eq!(TagList::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_etag_is_strong_once_the_file_has_settled() {
        let young = file(Duration::from_millis(999));
        let settled = file(SETTLE);
        assert!(young.etag.weak && !settled.etag.weak);
        assert_eq!(settled.etag.to_string(), r#""1f-a-2ebc98a1.00000005""#);
        assert_eq!(young.etag.opaque, settled.etag.opaque);
        // Each of inode, size, seconds and nanoseconds changes the tag.
        let now = SystemTime::now();
        let base = Validators::new(1, 2, 3, 4, now).etag;
        for other in [(9, 2, 3, 4), (1, 9, 3, 4), (1, 2, 9, 4), (1, 2, 3, 9)] {
            let (i, s, sec, ns) = other;
            assert_ne!(Validators::new(i, s, sec, ns, now).etag, base);
        }
        // An mtime in the future (a skewed clock, `touch -d`) is not settled.
        let future = Validators::new(1, 2, i64::MAX / 4, 0, now);
        assert!(future.etag.weak);
        assert!(!Validators::new(1, 2, -5, 0, now).etag.weak);
    }

    #[test]
    fn if_none_match_answers_304_with_weak_comparison() {
        let f = file(SETTLE);
        let current = f.etag.to_string();
        let weak_current = format!("W/{current}");
        for value in [
            current.as_str(),
            &weak_current,
            "*",
            &format!(r#""x", {current}"#),
        ] {
            let c = conditions("if-none-match", value);
            assert_eq!(
                evaluate_preconditions("GET", &c, &f),
                NotModified,
                "{value}"
            );
            assert_eq!(evaluate_preconditions("HEAD", &c, &f), NotModified);
            assert_eq!(evaluate_preconditions("DELETE", &c, &f), Failed);
        }
        for value in [r#""other""#, "not a list"] {
            let c = conditions("if-none-match", value);
            assert_eq!(evaluate_preconditions("GET", &c, &f), Proceed, "{value}");
        }
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let f = file(SETTLE);
        let mut c = conditions("if-none-match", r#""a-stale-tag""#);
        c.if_modified_since = Some("Sun, 06 Nov 1994 08:49:37 GMT".into());
        assert_eq!(evaluate_preconditions("GET", &c, &f), Proceed);
        c.if_none_match = None;
        assert_eq!(evaluate_preconditions("GET", &c, &f), NotModified);
        // Only for GET and HEAD; a date before the change, or junk, sends the file.
        assert_eq!(evaluate_preconditions("POST", &c, &f), Proceed);
        for date in ["Sun, 06 Nov 1994 08:49:36 GMT", "yesterday", ""] {
            let c = conditions("if-modified-since", date);
            assert_eq!(evaluate_preconditions("GET", &c, &f), Proceed, "{date}");
        }
        // The obsolete date formats of RFC 9110 §5.6.7 count too.
        let c = conditions("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT");
        assert_eq!(evaluate_preconditions("GET", &c, &f), NotModified);
    }

    #[test]
    fn if_match_and_if_unmodified_since_give_412() {
        let f = file(SETTLE);
        let current = f.etag.to_string();
        let ok = |c: &Conditions| evaluate_preconditions("GET", c, &f);
        assert_eq!(ok(&conditions("if-match", &current)), Proceed);
        assert_eq!(ok(&conditions("if-match", "*")), Proceed);
        assert_eq!(ok(&conditions("if-match", &format!("W/{current}"))), Failed);
        assert_eq!(ok(&conditions("if-match", "junk")), Failed);
        let before = "Sun, 06 Nov 1994 08:49:36 GMT";
        assert_eq!(ok(&conditions("if-unmodified-since", before)), Failed);
        let at = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(ok(&conditions("if-unmodified-since", at)), Proceed);
        // If-Match present: If-Unmodified-Since is not looked at (step 2 is "else").
        let mut c = conditions("if-match", &current);
        c.if_unmodified_since = Some(before.into());
        assert_eq!(ok(&c), Proceed);
        // A young file's weak tag never passes If-Match.
        let young = file(Duration::ZERO);
        let c = conditions("if-match", &young.etag.to_string());
        assert_eq!(evaluate_preconditions("GET", &c, &young), Failed);
    }

    #[test]
    fn if_range_needs_a_strong_match_or_the_exact_date() {
        let f = file(SETTLE);
        assert!(range_applies(&Conditions::default(), &f));
        assert!(range_applies(
            &conditions("if-range", &f.etag.to_string()),
            &f
        ));
        let weak = format!("W/{}", f.etag);
        for value in [
            weak.as_str(),
            r#""other""#,
            "Sun, 06 Nov 1994 08:49:38 GMT",
            "Sun, 06 Nov 1994 08:49:36 GMT",
            "garbage",
            &format!("{}, {}", f.etag, f.etag),
        ] {
            assert!(
                !range_applies(&conditions("if-range", value), &f),
                "{value}"
            );
        }
        let date = conditions("if-range", "Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(range_applies(&date, &f));
        // Neither validator of a file changed this very second is strong enough.
        let young = file(Duration::from_millis(10));
        assert!(!range_applies(&date, &young));
        let young_tag = conditions("if-range", &young.etag.to_string());
        assert!(!range_applies(&young_tag, &young));
    }

    #[test]
    fn conditions_from_a_request_join_repeated_fields() {
        let text = b"GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"a\"\r\nif-none-match: \"b\"\r\n\
            If-Range: \"c\"\r\n\r\n";
        let crate::Parsed::Complete(request, _) = crate::parse_head(text) else {
            panic!("the head should parse");
        };
        let c = Conditions::from_request(&request);
        assert_eq!(c.if_none_match.as_deref(), Some(r#""a", "b""#));
        assert_eq!(c.if_range.as_deref(), Some(r#""c""#));
        assert_eq!(c.if_match, None);
    }

    #[test]
    fn chunked_framing_of_rfc_9112_7_1() {
        assert_eq!(chunk_head(0x1a3), "1a3\r\n");
        assert_eq!(chunk(b"hello"), b"5\r\nhello\r\n");
        assert_eq!(chunk(b""), b"");
        let mut body = chunk(&[b'x'; 26]);
        body.extend_from_slice(&chunk(b"!"));
        body.extend_from_slice(LAST_CHUNK);
        assert!(body.starts_with(b"1a\r\nxxxx"));
        body.extend_from_slice(b"HTTP/1.1 200 OK");
        let (data, used) = decode_chunked(&body).unwrap();
        assert_eq!(data.len(), 27);
        assert_eq!(&body[used..], b"HTTP/1.1 200 OK");
        assert_eq!(
            decode_chunked(b"3;ext=1\r\nabc\r\n0\r\n\r\n").unwrap().0,
            b"abc"
        );
        for bad in [
            &b"3\r\nab\r\n0\r\n\r\n"[..],
            b"3\r\nabc0\r\n\r\n",
            b"x\r\n",
            b"0\r\n",
            b"",
        ] {
            assert_eq!(decode_chunked(bad), None);
        }
    }
}
