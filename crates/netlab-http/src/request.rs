//! The request head: `METHOD SP target SP HTTP/1.x CRLF`, header lines, an empty line
//! (RFC 9112 §2-5), parsed from the bytes read so far, with size limits.
//!
//! The parser is strict where leniency has been a source of request smuggling: no whitespace
//! before a header's colon, no obsolete line folding, no control bytes. Bare LF line ends are
//! accepted (RFC 9112 §2.2 allows it), so `printf 'GET / HTTP/1.0\n\n' | nc` works.

/// Longest request line: beyond it, 414 URI Too Long.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Longest head (request line and headers): beyond it, 431 Request Header Fields Too Large.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines in one request (431 beyond).
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    /// As sent (methods are case-sensitive: `get` is not `GET`).
    pub method: String,
    /// The raw request target, still percent-encoded: see [`crate::parse_target`].
    pub target: String,
    pub version: Version,
    /// Header names as sent; look them up with [`Request::header`].
    pub headers: Vec<(String, String)>,
}

/// What the bytes so far hold.
#[derive(Debug)]
pub enum Parsed {
    /// No complete head yet, and no limit passed: read more.
    Incomplete,
    /// A head, and how many bytes of the buffer it used (the rest is the next request).
    Complete(Request, usize),
    /// The head is bad: answer with this status and close the connection.
    Error(u16),
}

impl Request {
    /// The first header of this name (case-insensitive), value trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Does a `Connection` header list this token (`close`, `keep-alive`)?
    fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// HTTP/1.1 keeps the connection unless the client says `Connection: close`. This server
    /// closes every HTTP/1.0 connection after one response (the 1.0 default).
    pub fn keep_alive(&self) -> bool {
        self.version == Version::Http11 && !self.connection_has("close")
    }

    /// Does a body follow the head? This server reads no request bodies, so it answers such a
    /// request and closes, rather than take the body for the next request.
    pub fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .is_some_and(|v| v.trim() != "0")
    }
}

/// Parses a request head from the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Parsed {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line
    // (some clients send a stray CRLF after a request body).
    let skip = buf
        .iter()
        .take(8)
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let head = &buf[skip..];

    let Some(line_end) = head.iter().position(|&b| b == b'\n') else {
        return if head.len() > MAX_REQUEST_LINE {
            Parsed::Error(414)
        } else {
            Parsed::Incomplete
        };
    };
    if line_end > MAX_REQUEST_LINE {
        return Parsed::Error(414);
    }
    let Some(head_len) = find_head_end(head) else {
        return if head.len() > MAX_HEAD {
            Parsed::Error(431)
        } else {
            Parsed::Incomplete
        };
    };
    if head_len > MAX_HEAD {
        return Parsed::Error(431);
    }

    let mut lines = head[..head_len].split(|&b| b == b'\n').map(strip_cr);
    let request_line = lines.next().unwrap_or_default();
    let (method, target, version) = match parse_request_line(request_line) {
        Ok(parts) => parts,
        Err(status) => return Parsed::Error(status),
    };

    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        if headers.len() == MAX_HEADERS {
            return Parsed::Error(431);
        }
        match parse_header_line(line) {
            Some(header) => headers.push(header),
            None => return Parsed::Error(400),
        }
    }
    let request = Request {
        method,
        target,
        version,
        headers,
    };
    // RFC 9112 §3.2: a 1.1 request without exactly one Host is answered with 400.
    let hosts = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .count();
    if hosts > 1 || (version == Version::Http11 && hosts == 0) {
        return Parsed::Error(400);
    }
    // RFC 9112 §6.3: a Content-Length that is not one number is an unrecoverable error. Every
    // line counts: with `0` first and `1` second (found by tests/fuzz), `has_body` used to say
    // no, and the byte behind the head would have been read as the next request.
    let mut lengths = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v);
    if let Some(first) = lengths.next() {
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Parsed::Error(400);
        }
        if lengths.any(|other| other != first) {
            return Parsed::Error(400);
        }
    }
    Parsed::Complete(request, skip + head_len)
}

/// Length of the head including its final empty line, if it is all there.
fn find_head_end(head: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(pos) = head[start..].iter().position(|&b| b == b'\n') {
        let next = start + pos + 1;
        match head.get(next..) {
            Some([b'\n', ..]) => return Some(next + 1),
            Some([b'\r', b'\n', ..]) => return Some(next + 2),
            _ => start = next,
        }
    }
    None
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// RFC 9110 §5.6.2 token characters (method names, header names).
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, Version), u16> {
    // Exactly three parts separated by single spaces; the target must be visible ASCII, so a
    // NUL, a tab, a raw CR or any byte >= 0x80 in it is a 400 before it gets near a path.
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !is_token(method) || target.is_empty() || !target.iter().all(|b| b.is_ascii_graphic()) {
        return Err(400);
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(505)
        }
        _ => return Err(400),
    };
    // Both are ASCII by the checks above.
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((text(method), text(target), version))
}

fn parse_header_line(line: &[u8]) -> Option<(String, String)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    // A name with whitespace before the colon, or a line starting with whitespace (obsolete
    // folding), is rejected: RFC 9112 §5.1 and §5.2.
    if !is_token(name) {
        return None;
    }
    // Only SP and HTAB are whitespace around a value (OWS, RFC 9110 §5.6.3): a CR, a form
    // feed or a vertical tab at either end is a control byte like any other, so a 400.
    let value = trim_ows(value);
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return None;
    }
    Some((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(text: &[u8]) -> (Request, usize) {
        match parse_head(text) {
            Parsed::Complete(r, n) => (r, n),
            other => panic!("{other:?}"),
        }
    }

    fn status(text: &[u8]) -> u16 {
        match parse_head(text) {
            Parsed::Error(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_simple_head_and_the_next_request_behind_it() {
        let text = b"GET /a HTTP/1.1\r\nHost: x\r\nRange:  bytes=0-1 \r\n\r\nGET /b";
        let (r, used) = complete(text);
        assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/a"));
        assert_eq!(r.header("RANGE"), Some("bytes=0-1"));
        assert!(r.keep_alive());
        assert_eq!(&text[used..], b"GET /b");
    }

    #[test]
    fn bare_lf_and_http10() {
        let (r, used) = complete(b"\r\nHEAD / HTTP/1.0\n\n");
        assert_eq!(r.version, Version::Http10);
        assert!(!r.keep_alive());
        assert_eq!(used, 19);
    }

    #[test]
    fn incomplete_until_the_empty_line() {
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Incomplete
        ));
        assert!(matches!(parse_head(b""), Parsed::Incomplete));
    }

    #[test]
    fn limits() {
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert_eq!(status(long_line.as_bytes()), 414);
        assert_eq!(status(&vec![b'a'; MAX_REQUEST_LINE + 1]), 414);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "b".repeat(MAX_HEAD));
        assert_eq!(status(big.as_bytes()), 431);
        let many = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "A: b\r\n".repeat(200)
        );
        assert_eq!(status(many.as_bytes()), 431);
    }

    #[test]
    fn bad_heads() {
        assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400); // no Host
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x00c\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        // Found by tests/fuzz: CR, FF and VT at a value's ends were trimmed as if whitespace.
        for value in [&b"\t \r\x80"[..], b"a\x0c", b"\x0ba", b"a\r"] {
            let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n\r\n");
            assert_eq!(status(&head), 400, "{}", value.escape_ascii());
        }
        assert_eq!(status(b"GET / FTP\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        // Found by tests/fuzz: only the first Content-Length was checked.
        for lengths in ["0\r\nContent-Length: 1", "1\r\nContent-Length: x"] {
            let head = format!("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: {lengths}\r\n\r\n");
            assert_eq!(status(head.as_bytes()), 400, "{lengths}");
        }
        let (same, _) = complete(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n",
        );
        assert!(same.has_body());
    }

    #[test]
    fn bodies_and_connection_close() {
        let (r, _) = complete(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: foo, close\r\n\r\n",
        );
        assert!(r.has_body());
        assert!(!r.keep_alive());
    }
}
