//! Reading HTTP/1.1 replies off a keep-alive connection: the head up to its blank line, checked
//! ([`parse_http_head`]: a `200` with a `Content-Length`), then exactly that many body bytes.
//! Bytes may arrive split anywhere, and several replies may arrive in one read.

/// A reply head longer than this is refused: no server in this project sends one.
const MAX_HEAD: usize = 64 * 1024;

/// One connection's reply reader: the head read so far, then the body bytes still owed.
#[derive(Default)]
pub(crate) struct HttpReply {
    head: Vec<u8>,
    body_left: Option<u64>,
}

/// What one [`HttpReply::advance`] took from the bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The bytes ended inside a reply head; it is kept until the rest arrives.
    InHead,
    /// `bytes` of body were taken; `done` when that ended the reply (a head with
    /// `Content-Length: 0` is `bytes: 0, done: true`).
    Body { bytes: u64, done: bool },
}

impl HttpReply {
    /// Takes what it can from the front of `data` (moving `data` past it): the rest of a head,
    /// or body bytes. Call again while `data` is not empty. An error means the reply is not
    /// one this client accepts; the connection cannot be trusted after it.
    pub(crate) fn advance(&mut self, data: &mut &[u8]) -> Result<Step, String> {
        if let Some(left) = self.body_left {
            let take = (data.len() as u64).min(left);
            *data = &data[take as usize..];
            let done = left == take;
            self.body_left = if done { None } else { Some(left - take) };
            return Ok(Step::Body { bytes: take, done });
        }
        // Reading the head: keep bytes until the blank line; what follows it is body.
        let old = self.head.len();
        self.head.extend_from_slice(data);
        let from = old.saturating_sub(3);
        let Some(pos) = find(&self.head[from..], b"\r\n\r\n").map(|p| p + from) else {
            if self.head.len() > MAX_HEAD {
                return Err("reply head over 64 KiB".into());
            }
            *data = &[];
            return Ok(Step::InHead);
        };
        let length = parse_http_head(&self.head[..pos + 4])?;
        // The head's end in `data`: the head began `old` bytes before `data` did.
        *data = &data[pos + 4 - old..];
        self.head.clear();
        if length == 0 {
            Ok(Step::Body {
                bytes: 0,
                done: true,
            })
        } else {
            self.body_left = Some(length);
            Ok(Step::Body {
                bytes: 0,
                done: false,
            })
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks a reply head and returns its Content-Length.
pub(crate) fn parse_http_head(head: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(head).map_err(|_| "reply head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x reply: {status:?}"));
    }
    if code != "200" {
        return Err(format!("status {status:?}, expected 200"));
    }
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "Transfer-Encoding {value:?} is not supported; need Content-Length"
            ));
        }
    }
    length.ok_or_else(|| "reply without Content-Length".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_heads() {
        assert_eq!(
            parse_http_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"),
            Ok(12)
        );
        assert!(parse_http_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").is_err());
        assert!(parse_http_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_http_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    /// Feeds `chunks` one read at a time; returns the body bytes of each completed reply.
    fn replies(chunks: &[&[u8]]) -> Result<Vec<u64>, String> {
        let mut reply = HttpReply::default();
        let (mut body, mut done) = (0, Vec::new());
        for chunk in chunks {
            let mut data = *chunk;
            while !data.is_empty() {
                match reply.advance(&mut data)? {
                    Step::InHead => assert!(data.is_empty()),
                    Step::Body { bytes, done: end } => {
                        body += bytes;
                        if end {
                            done.push(body);
                            body = 0;
                        }
                    }
                }
            }
        }
        Ok(done)
    }

    #[test]
    fn replies_split_anywhere_and_pipelined() {
        let one = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        // Every split point of one reply, then two replies and a bodiless one in one read.
        for cut in 0..one.len() {
            assert_eq!(
                replies(&[&one[..cut], &one[cut..]]),
                Ok(vec![5]),
                "cut {cut}"
            );
        }
        let two = [
            &one[..],
            &one[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ]
        .concat();
        assert_eq!(replies(&[&two]), Ok(vec![5, 5, 0]));
        assert!(replies(&[b"garbage\r\n\r\n"]).is_err());
        assert!(replies(&[&vec![b'x'; MAX_HEAD + 1]]).is_err());
    }
}
