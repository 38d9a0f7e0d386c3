//! Response heads: the status line, headers, the empty line; and the short error responses.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

/// The reason phrase for the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A response head being written: `HTTP/1.1 200 OK`, `Date`, `Server`, then the caller's
/// headers. [`finish`](Self::finish) adds `Connection` and the empty line.
pub struct ResponseHead {
    text: String,
}

impl ResponseHead {
    pub fn new(status: u16) -> ResponseHead {
        let mut text = String::with_capacity(256);
        let _ = write!(
            text,
            "HTTP/1.1 {status} {}\r\nDate: {}\r\nServer: netlab-fileserve\r\n",
            reason(status),
            httpdate::fmt_http_date(SystemTime::now())
        );
        ResponseHead { text }
    }

    /// Adds `name: value`. Values come from this server, never raw from a request.
    pub fn header(mut self, name: &str, value: impl std::fmt::Display) -> ResponseHead {
        let _ = write!(self.text, "{name}: {value}\r\n");
        self
    }

    /// Ends the head: `Connection: keep-alive` or `close`, then the empty line.
    pub fn finish(self, keep_alive: bool) -> Vec<u8> {
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let mut text = self.text;
        let _ = write!(text, "Connection: {connection}\r\n\r\n");
        text.into_bytes()
    }
}

/// A short error response: head and a one-line text body (`404 Not Found`), or the head alone
/// for HEAD requests. `extra` headers go in too (`Allow`, `Content-Range`).
pub fn error_response(
    status: u16,
    extra: &[(&str, String)],
    with_body: bool,
    keep_alive: bool,
) -> Vec<u8> {
    let body = format!("{status} {}\n", reason(status));
    let mut head = ResponseHead::new(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Content-Length", body.len());
    for (name, value) in extra {
        head = head.header(name, value);
    }
    let mut bytes = head.finish(keep_alive);
    if with_body {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

/// `Content-Type` from the file name's extension; `application/octet-stream` when unknown.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" | "rs" | "toml" | "sh" | "c" | "h" | "log" | "csv" => {
            "text/plain; charset=utf-8"
        }
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        _ => "application/octet-stream",
    }
}

/// `Last-Modified`'s text for a modification time in seconds since the epoch.
pub fn http_date(unix_seconds: i64) -> String {
    let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds.max(0) as u64);
    httpdate::fmt_http_date(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_types() {
        let head = String::from_utf8(
            ResponseHead::new(200)
                .header("Content-Length", 5)
                .finish(false),
        )
        .unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\nDate: "));
        assert!(head.ends_with("Content-Length: 5\r\nConnection: close\r\n\r\n"));
        assert_eq!(
            content_type(Path::new("a/B.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
        let e = String::from_utf8(error_response(
            405,
            &[("Allow", "GET, HEAD".into())],
            true,
            true,
        ))
        .unwrap();
        assert!(
            e.contains("\r\nAllow: GET, HEAD\r\n")
                && e.ends_with("\r\n\r\n405 Method Not Allowed\n")
        );
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
