//! What to answer one request: a [`Response`] is the head (status line, headers, and the whole
//! body when it is short: errors, redirects), then maybe a range of an open file for the
//! server to move into the socket its own way. Nothing here touches a socket; it only opens
//! and stats files beneath the root.
//!
//! [`respond`] decides, in this order: the method (405), the target (400), hidden names (403
//! unless the site allows them), then what the path names: a file ([`file_response`]: 200,
//! 206, 304 or 416), a directory without its trailing slash (301), a directory's
//! `index.html`, or its listing ([`listing_response`], chunked as it is generated).

use std::fs::File;
use std::path::Path;
use std::time::SystemTime;

use nix::sys::stat::FileStat;

use crate::conditional::{
    chunk, evaluate_preconditions, range_applies, Conditions, Precondition, Validators, LAST_CHUNK,
};
use crate::listing::Listing;
use crate::range::{evaluate_range, RangeDecision};
use crate::request::{Request, Version};
use crate::resolve::{Opened, Root};
use crate::response::{content_type, error_response, http_date, ResponseHead};
use crate::target::parse_target;

/// The served directory and what may be served from it.
#[derive(Debug)]
pub struct Site {
    pub root: Root,
    /// Serve names that start with a dot (`.git/config`, `.env`)? Off by default: a file server
    /// started in a repository must not publish the repository.
    pub allow_hidden: bool,
}

/// A response being sent: bytes from this process (the head, a short body, the listing's
/// chunks as they are made), then maybe a range of a file.
pub struct Response {
    /// Bytes to send now: the head (with a short body when there is one), or the next piece of
    /// a generated body ([`refill`](Self::refill)).
    pub head: Vec<u8>,
    /// How much of `head` has gone into the socket so far.
    pub head_sent: usize,
    /// The file bytes that follow the head, if any.
    pub body: Option<FileRange>,
    /// Keep the connection for the next request once this one is sent?
    pub keep_alive: bool,
    /// A body made while it is sent (a directory listing).
    generated: Option<Generated>,
}

/// The part of an open file still to send: `pos..end`.
#[derive(Debug)]
pub struct FileRange {
    pub file: File,
    pub pos: u64,
    pub end: u64,
}

/// A listing sent as it is generated: HTTP/1.1 frames each piece as a chunk (its size in hex,
/// CRLF, the bytes, CRLF; a zero-size chunk ends it), HTTP/1.0 sends the bytes bare and ends
/// the body by closing the connection.
struct Generated {
    listing: Listing,
    chunked: bool,
}

/// About this much HTML goes into one chunk.
const PIECE: usize = 8 * 1024;

impl Response {
    fn new(head: Vec<u8>, body: Option<FileRange>, keep_alive: bool) -> Response {
        Response {
            head,
            head_sent: 0,
            body,
            keep_alive,
            generated: None,
        }
    }

    /// Once `head` is all sent: puts the next piece of a generated body in it and returns
    /// true, or returns false when there is nothing more to make.
    pub fn refill(&mut self) -> bool {
        let Some(generated) = self.generated.as_mut() else {
            return false;
        };
        self.head = match (generated.listing.next_piece(PIECE), generated.chunked) {
            (Some(html), true) => chunk(html.as_bytes()),
            (Some(html), false) => html.into_bytes(),
            (None, true) => {
                self.generated = None;
                LAST_CHUNK.to_vec()
            }
            (None, false) => {
                self.generated = None;
                return false;
            }
        };
        self.head_sent = 0;
        true
    }
}

/// Builds the response to one request.
pub fn respond(site: &Site, request: &Request) -> Response {
    // This server reads no request bodies: answer, then close, so a body is never taken for
    // the next request.
    let keep_alive = request.keep_alive() && !request.has_body();
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return short_response(405, &[("Allow", "GET, HEAD".into())], true, keep_alive);
    }
    // A body this server would have to read (RFC 9112 §6.1: 501 for a transfer coding it does
    // not implement). The connection closes after the answer, and lingers meanwhile, so the
    // body is read and thrown away rather than taken for the next request.
    if request.header("transfer-encoding").is_some() {
        return short_response(501, &[], !head_only, false);
    }
    let Ok(target) = parse_target(&request.target) else {
        return short_response(400, &[], !head_only, false);
    };
    // Refused by name, whether or not it exists, so the answer tells nothing about the disk.
    if !site.allow_hidden && target.segments.iter().any(|s| s.starts_with(b".")) {
        return short_response(403, &[], !head_only, keep_alive);
    }
    let relative = target.relative_path();
    match site.root.open(&relative) {
        // `/file.txt/` asks for a directory: a file is not one.
        Ok(Opened::File(..)) if target.trailing_slash => {
            short_response(404, &[], !head_only, keep_alive)
        }
        Ok(Opened::File(file, stat)) => {
            file_response(request, &relative, file, &stat, head_only, keep_alive)
        }
        Ok(Opened::Dir) if !target.trailing_slash => {
            // `/sub` names a directory: send the client to `/sub/`, or relative links in the
            // listing or index.html would resolve against the parent.
            let location = target.directory_location();
            short_response(301, &[("Location", location)], !head_only, keep_alive)
        }
        Ok(Opened::Dir) => {
            let index = relative.join("index.html");
            match site.root.open(&index) {
                Ok(Opened::File(file, stat)) => {
                    file_response(request, &index, file, &stat, head_only, keep_alive)
                }
                _ => listing_response(
                    site,
                    &relative,
                    &target.display_path(),
                    request.version == Version::Http11,
                    head_only,
                    keep_alive,
                ),
            }
        }
        Err(refusal) => short_response(refusal.status(), &[], !head_only, keep_alive),
    }
}

/// 200 with the whole file, 206 with one range, 304 if the client's copy is current, 412 if a
/// precondition fails, or 416. The `ETag` is strong (weak for a file changed within the last
/// second): see netlab_http::conditional.
pub fn file_response(
    request: &Request,
    path: &Path,
    file: File,
    stat: &FileStat,
    head_only: bool,
    keep_alive: bool,
) -> Response {
    let len = stat.st_size as u64;
    let last_modified = http_date(stat.st_mtime);
    let validators = Validators::of_file(stat, SystemTime::now());
    let conditions = Conditions::from_request(request);
    // RFC 9110 §13.2.2: If-None-Match first, If-Modified-Since only without it.
    match evaluate_preconditions(&request.method, &conditions, &validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            let head = ResponseHead::new(304)
                .header("ETag", &validators.etag)
                .header("Last-Modified", &last_modified)
                .finish(keep_alive);
            return Response::new(head, None, keep_alive);
        }
        Precondition::Failed => return short_response(412, &[], !head_only, keep_alive),
    }
    // If-Range: the range holds only if the client's copy is this version of the file.
    let range = if range_applies(&conditions, &validators) {
        evaluate_range(request.header("range"), len)
    } else {
        RangeDecision::Full
    };
    let (status, start, end) = match range {
        RangeDecision::Full => (200, 0, len),
        RangeDecision::Partial { start, end } => (206, start, end + 1),
        RangeDecision::Unsatisfiable => {
            let range = ("Content-Range", format!("bytes */{len}"));
            return short_response(416, &[range], !head_only, keep_alive);
        }
    };
    let mut head = ResponseHead::new(status)
        .header("Content-Type", content_type(path))
        .header("Content-Length", end - start)
        .header("ETag", &validators.etag)
        .header("Last-Modified", &last_modified)
        .header("Accept-Ranges", "bytes");
    if status == 206 {
        head = head.header("Content-Range", format!("bytes {start}-{}/{len}", end - 1));
    }
    let body = (!head_only && end > start).then_some(FileRange {
        file,
        pos: start,
        end,
    });
    Response::new(head.finish(keep_alive), body, keep_alive)
}

/// 200 with a plain HTML list of the directory's entries (hidden ones only if the site allows
/// them), generated while it is sent: `Transfer-Encoding: chunked` when `chunked` (HTTP/1.1),
/// else a body that ends when the connection closes (HTTP/1.0).
pub fn listing_response(
    site: &Site,
    relative: &Path,
    display_path: &str,
    chunked: bool,
    head_only: bool,
    keep_alive: bool,
) -> Response {
    let listing = match site.root.open_dir(relative) {
        Ok(dir) => match Listing::read(dir, display_path, site.allow_hidden) {
            Ok(listing) => listing,
            Err(_) => return short_response(403, &[], !head_only, keep_alive),
        },
        Err(refusal) => return short_response(refusal.status(), &[], !head_only, keep_alive),
    };
    let keep_alive = keep_alive && chunked;
    let mut head = ResponseHead::new(200).header("Content-Type", "text/html; charset=utf-8");
    if chunked {
        head = head.header("Transfer-Encoding", "chunked");
    }
    let mut response = Response::new(head.finish(keep_alive), None, keep_alive);
    if !head_only {
        response.generated = Some(Generated { listing, chunked });
    }
    response
}

/// An error or redirect: the head and a one-line body, all in one buffer.
pub fn short_response(
    status: u16,
    extra: &[(&str, String)],
    with_body: bool,
    keep_alive: bool,
) -> Response {
    // After a client error in the request itself (400, 408, 414, 431, 505) we cannot trust
    // where the next request would start: close.
    let keep_alive = keep_alive && !matches!(status, 400 | 408 | 414 | 431 | 505);
    Response::new(
        error_response(status, extra, with_body, keep_alive),
        None,
        keep_alive,
    )
}
