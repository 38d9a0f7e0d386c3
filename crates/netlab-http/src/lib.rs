//! netlab-http: just enough HTTP/1.1 for the file server lab, and the one safe way to open a
//! file a client names.
//!
//! | module       | what it holds                                                           |
//! |--------------|-------------------------------------------------------------------------|
//! | [`request`]  | [`parse_head`]: request line and headers, with size limits (414, 431)   |
//! | [`target`]   | [`parse_target`]: the request target, percent-decoded, dot segments refused |
//! | [`resolve`]  | [`Root`]: `openat2(RESOLVE_BENEATH)`, so the kernel keeps opens under the root |
//! | [`range`]    | [`evaluate_range`]: one `Range: bytes=...` → 200, 206 or 416             |
//! | [`conditional`] | ETags, `If-None-Match` / `If-Modified-Since` / `If-Range`, chunked framing |
//! | [`response`] | response heads, short error responses, `Content-Type` from the extension |
//! | [`respond`]  | [`respond()`]: what to answer a request, as a head and maybe a file range |
//! | [`connection`] | [`connection::Connection`]: input, response, deadlines, lingering close |
//! | [`listing`]  | the plain HTML listing of a directory                                   |
//! | [`transfer`] | [`transfer::send_bytes`] (`MSG_NOSIGNAL`) and [`transfer::Moved`]        |
//!
//! There is no `unsafe` in this crate: nix wraps `openat2(2)` and `send(2)` safely. The file
//! to socket step itself (`sendfile(2)` or `pread(2)` + `write(2)`) is the lesson, so it lives
//! in the lab file, labs/06-fileserve/main.rs.

pub mod conditional;
pub mod connection;
pub mod listing;
pub mod range;
pub mod request;
pub mod resolve;
pub mod respond;
pub mod response;
pub mod target;
pub mod transfer;

pub use range::{evaluate_range, RangeDecision};
pub use request::{parse_head, Parsed, Request, Version};
pub use resolve::{Opened, Refusal, Root};
pub use respond::{respond, FileRange, Response, Site};
pub use response::{content_type, reason, ResponseHead};
pub use target::{parse_target, Target};
