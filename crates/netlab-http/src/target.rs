//! The request target (RFC 9112 §3.2), turned into a path relative to the served root.
//!
//! Only origin-form (`/path?query`) is taken. Each `/`-separated segment is percent-decoded
//! on its own, after splitting, so `%2f` can never make a new separator; a decoded segment
//! that is `.` or `..`, or that holds `/`, `\`, NUL or another control byte, is refused. Empty
//! segments (`//`) are dropped, so the result never starts with `/`.
//!
//! This is the first fence, not the only one: the path is then opened with
//! `openat2(RESOLVE_BENEATH)` ([`crate::Root`]), which refuses anything (a `..`, an absolute
//! symlink, a symlink out) that would leave the root, at the moment of the open.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// A request target that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Decoded segments, none empty, `.` or `..`.
    pub segments: Vec<Vec<u8>>,
    /// Did the path end in `/` (ask for a directory)?
    pub trailing_slash: bool,
}

impl Target {
    /// The path relative to the root: `a/b.txt`, or `.` for the root itself.
    pub fn relative_path(&self) -> PathBuf {
        if self.segments.is_empty() {
            return PathBuf::from(".");
        }
        PathBuf::from(OsString::from_vec(self.segments.join(&b'/')))
    }

    /// Where to send a client that named a directory without the trailing slash: `/a/b/`,
    /// rebuilt from the checked segments, each percent-encoded. Never the path as sent: `//host`
    /// in a `Location` header is a link to another host.
    pub fn directory_location(&self) -> String {
        let mut location = String::from("/");
        for segment in &self.segments {
            location.push_str(&percent_encode(segment));
            location.push('/');
        }
        location
    }

    /// The decoded path for display (`/a/b/`), lossy where the bytes are not UTF-8.
    pub fn display_path(&self) -> String {
        let mut path = String::from("/");
        for segment in &self.segments {
            path.push_str(&String::from_utf8_lossy(segment));
            path.push('/');
        }
        if !self.trailing_slash && !self.segments.is_empty() {
            path.pop();
        }
        path
    }
}

/// Why a target was refused (all are 400 Bad Request).
pub type TargetError = &'static str;

/// Checks and decodes a raw request target.
pub fn parse_target(raw: &str) -> Result<Target, TargetError> {
    if !raw.starts_with('/') {
        // `http://host/path` (absolute-form, for proxies), `host:port` (authority-form, for
        // CONNECT) and `*` (OPTIONS) are not for a file server.
        return Err("only origin-form targets (/path) are served");
    }
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    let mut segments = Vec::new();
    for raw_segment in path.split('/').filter(|s| !s.is_empty()) {
        let segment = percent_decode(raw_segment)?;
        if segment == b"." || segment == b".." {
            return Err("dot segments are refused");
        }
        if segment
            .iter()
            .any(|&b| b == b'/' || b == b'\\' || b < 0x20 || b == 0x7f)
        {
            return Err("encoded slash, backslash or control byte in the path");
        }
        segments.push(segment);
    }
    Ok(Target {
        trailing_slash: path.ends_with('/'),
        segments,
    })
}

fn percent_decode(text: &str) -> Result<Vec<u8>, TargetError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            // Two hex digits, checked as such: `u8::from_str_radix` alone also takes a sign,
            // so `%+1` decoded to 0x01 (refused later as a control byte, but by luck).
            let digit = |b: u8| (b as char).to_digit(16);
            let (Some(high), Some(low)) = (digit(hex[0]), digit(hex[1])) else {
                return Err("bad %-escape");
            };
            let value = (high * 16 + low) as u8;
            // Decoded once only: `%252e` is the three characters `%2e`, a harmless name.
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Percent-encodes a file name for an `href` (everything but unreserved characters).
pub fn percent_encode(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_location_is_always_on_this_host() {
        assert_eq!(
            parse_target("//evil.com").unwrap().directory_location(),
            "/evil.com/"
        );
        assert_eq!(
            parse_target("/a//b c").unwrap().directory_location(),
            "/a/b%20c/"
        );
        assert_eq!(parse_target("///").unwrap().directory_location(), "/");
    }

    #[test]
    fn ordinary_paths() {
        let t = parse_target("/a//b%20c.txt?x=1").unwrap();
        assert_eq!(t.segments, vec![b"a".to_vec(), b"b c.txt".to_vec()]);
        assert_eq!(t.relative_path(), PathBuf::from("a/b c.txt"));
        assert!(!t.trailing_slash);
        let root = parse_target("/").unwrap();
        assert_eq!(root.relative_path(), PathBuf::from("."));
        assert!(root.trailing_slash);
        assert_eq!(parse_target("/d/").unwrap().display_path(), "/d/");
    }

    #[test]
    fn traversal_in_every_spelling_is_refused() {
        for bad in [
            "/..",
            "/../etc/passwd",
            "/a/../..",
            "/./a",
            "/%2e%2e/x",
            "/%2E%2e",
            "/.%2e/x",
            "/a%2f..%2fb",
            "/a%2F..",
            "/..%5cwin",
            "/a\\..\\b",
            "/a%00.txt",
            "/a%0d%0aX: y",
            "/%7f",
            "http://evil/etc/passwd",
            "etc/passwd",
            "*",
            "/%",
            "/%zz",
            "/%2",
            "/%+1",
            "/%-1",
        ] {
            assert!(parse_target(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_sign_is_not_a_hex_digit() {
        assert_eq!(parse_target("/%+1"), Err("bad %-escape"));
        assert_eq!(parse_target("/%+f/x"), Err("bad %-escape"));
        assert_eq!(parse_target("/%C3%a9").unwrap().segments[0], "é".as_bytes());
    }

    #[test]
    fn double_encoding_is_decoded_once() {
        let t = parse_target("/%252e%252e/x").unwrap();
        assert_eq!(t.segments[0], b"%2e%2e");
    }

    #[test]
    fn encoding_names() {
        assert_eq!(percent_encode(b"a b&<.txt"), "a%20b%26%3C.txt");
    }
}
