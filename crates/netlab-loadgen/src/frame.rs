//! The echo message: a 16-byte header and a payload derived from (connection id, sequence
//! number), so the client can check every echoed byte without storing what it sent.
//!
//! ```text
//! offset 0   u32 LE  total length of the message, header included
//! offset 4   u32 LE  connection id
//! offset 8   u64 LE  sequence number (0, 1, 2, ... per connection)
//! offset 16  payload: PATTERN[start .. start + len - 16], start = mix(conn, seq) % 256
//! ```
//!
//! A flipped byte, a short echo, a message of another connection or two messages swapped all
//! show up as a mismatch at a known offset. The receiver never assumes that one `read` is one
//! message: it walks the byte stream with exact lengths ([`Pattern::check`] takes any slice
//! of a message at its offset; the engine's worker keeps that offset per connection).

/// Bytes of header before the payload.
pub const HEADER: usize = 16;

/// How far the payload start may shift: each (conn, seq) starts at a different offset.
const SHIFT: usize = 256;

/// The shared random pattern every payload is cut from.
pub struct Pattern {
    size: usize,
    bytes: Vec<u8>,
}

/// A mismatch: where, and what differed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub conn: u32,
    pub seq: u64,
    pub offset: usize,
    pub expected: u8,
    pub got: u8,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connection {} message {}: byte {} is 0x{:02x}, expected 0x{:02x}",
            self.conn, self.seq, self.offset, self.got, self.expected
        )
    }
}

impl Pattern {
    /// A pattern for messages of `size` bytes (at least [`HEADER`]).
    pub fn new(size: usize) -> Pattern {
        assert!(size >= HEADER, "messages carry a {HEADER}-byte header");
        // xorshift64: cheap, fixed seed, so every run sends the same bytes.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let bytes = (0..size - HEADER + SHIFT)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        Pattern { size, bytes }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    fn start(conn: u32, seq: u64) -> usize {
        let mut x = (conn as u64) << 40 ^ seq;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        (x % SHIFT as u64) as usize
    }

    fn header(&self, conn: u32, seq: u64) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[0..4].copy_from_slice(&(self.size as u32).to_le_bytes());
        h[4..8].copy_from_slice(&conn.to_le_bytes());
        h[8..16].copy_from_slice(&seq.to_le_bytes());
        h
    }

    /// Appends message (conn, seq) to `out`.
    pub fn write_message(&self, conn: u32, seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header(conn, seq));
        let start = Self::start(conn, seq);
        out.extend_from_slice(&self.bytes[start..start + self.size - HEADER]);
    }

    /// Checks that `got` equals bytes `offset..offset + got.len()` of message (conn, seq).
    pub fn check(&self, conn: u32, seq: u64, offset: usize, got: &[u8]) -> Result<(), Mismatch> {
        debug_assert!(offset + got.len() <= self.size);
        let mut pos = offset;
        let mut rest = got;
        if pos < HEADER {
            let header = self.header(conn, seq);
            let n = rest.len().min(HEADER - pos);
            compare(&header[pos..pos + n], &rest[..n], pos, conn, seq)?;
            pos += n;
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            let start = Self::start(conn, seq) + pos - HEADER;
            compare(&self.bytes[start..start + rest.len()], rest, pos, conn, seq)?;
        }
        Ok(())
    }
}

fn compare(expected: &[u8], got: &[u8], base: usize, conn: u32, seq: u64) -> Result<(), Mismatch> {
    if expected == got {
        return Ok(());
    }
    let i = expected
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(0);
    Err(Mismatch {
        conn,
        seq,
        offset: base + i,
        expected: expected[i],
        got: got[i],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_checks_against_itself_in_any_split() {
        let p = Pattern::new(100);
        let mut msg = Vec::new();
        p.write_message(7, 3, &mut msg);
        assert_eq!(msg.len(), 100);
        assert!(p.check(7, 3, 0, &msg).is_ok());
        for split in [1, 15, 16, 17, 99] {
            assert!(p.check(7, 3, 0, &msg[..split]).is_ok());
            assert!(p.check(7, 3, split, &msg[split..]).is_ok());
        }
    }

    #[test]
    fn flipped_bytes_and_swapped_messages_are_caught() {
        let p = Pattern::new(64);
        let mut msg = Vec::new();
        p.write_message(1, 0, &mut msg);
        let mut bad = msg.clone();
        bad[40] ^= 1;
        let err = p.check(1, 0, 0, &bad).unwrap_err();
        assert_eq!(err.offset, 40);
        // The next message of the same connection, or the same seq of another, differs.
        assert!(p.check(1, 1, 0, &msg).is_err());
        assert!(p.check(2, 0, 0, &msg).is_err());
    }
}
