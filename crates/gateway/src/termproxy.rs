//! Proxmox's termproxy framing, so Proxmox-style terminal clients work unchanged.
//!
//! 1. The client's first line is `USER:TICKET\n`; the server answers `OK`.
//! 2. Client bytes then form a stream of messages, which may span or share WebSocket frames:
//!    - `0:LEN:` followed by LEN bytes of input;
//!    - `1:COLS:ROWS:`, a terminal resize;
//!    - `2`, a keepalive ping.
//! 3. Server output is sent unframed.
//!
//! The [`Decoder`] buffers only message headers (a few bytes); input data passes through in
//! the pieces it arrives in. Numbers longer than [`MAX_NUMBER_DIGITS`] and unknown message
//! types are errors.

use bytes::{Buf, Bytes, BytesMut};

/// Longest decimal number accepted in a header.
pub const MAX_NUMBER_DIGITS: usize = 10;
/// Longest login line accepted.
pub const MAX_LOGIN_LINE: usize = 4096;

/// Malformed termproxy input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("termproxy: {0}")]
pub struct TermproxyError(pub String);

/// A decoded client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermEvent {
    /// Bytes for the console.
    Input(Bytes),
    /// The client's terminal size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// A keepalive.
    Ping,
}

/// Turns the client's byte stream into [`TermEvent`]s.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    /// Input bytes still owed by the current `0:` message.
    remaining: usize,
}

impl Decoder {
    /// A decoder at the start of the message stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes received from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the bytes so far hold one.
    pub fn next_event(&mut self) -> Result<Option<TermEvent>, TermproxyError> {
        if self.remaining > 0 {
            if self.buf.is_empty() {
                return Ok(None);
            }
            let take = self.remaining.min(self.buf.len());
            self.remaining -= take;
            return Ok(Some(TermEvent::Input(self.buf.split_to(take).freeze())));
        }
        let Some(&kind) = self.buf.first() else {
            return Ok(None);
        };
        match kind {
            b'2' => {
                self.buf.advance(1);
                Ok(Some(TermEvent::Ping))
            }
            b'0' | b'1' => {
                let fields = if kind == b'0' { 1 } else { 2 };
                let Some((numbers, used)) = numbers(&self.buf, fields)? else {
                    return Ok(None);
                };
                self.buf.advance(used);
                if kind == b'0' {
                    self.remaining = numbers[0] as usize;
                    self.next_event()
                } else {
                    let size = |n: u64, what: &str| {
                        u16::try_from(n)
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| TermproxyError(format!("{what} {n} out of range")))
                    };
                    Ok(Some(TermEvent::Resize {
                        cols: size(numbers[0], "cols")?,
                        rows: size(numbers[1], "rows")?,
                    }))
                }
            }
            other => Err(TermproxyError(format!(
                "unknown message type {:?}",
                other as char
            ))),
        }
    }
}

/// Parses `K:N1:` or `K:N1:N2:` at the start of `buf`: `fields` numbers after the type and
/// its colon. Returns the numbers and the bytes used, or `None` if incomplete.
fn numbers(buf: &[u8], fields: usize) -> Result<Option<(Vec<u64>, usize)>, TermproxyError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] != b':' {
        return Err(TermproxyError(format!(
            "expected ':' after message type {:?}",
            buf[0] as char
        )));
    }
    let mut pos = 2;
    let mut found = Vec::with_capacity(fields);
    while found.len() < fields {
        let rest = &buf[pos..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > MAX_NUMBER_DIGITS {
            return Err(TermproxyError("number too long".into()));
        }
        if digits == rest.len() {
            return Ok(None);
        }
        if rest[digits] != b':' || digits == 0 {
            return Err(TermproxyError(format!(
                "malformed number in {:?}",
                String::from_utf8_lossy(&buf[..pos + digits + 1])
            )));
        }
        let text = std::str::from_utf8(&rest[..digits]).expect("ASCII digits");
        found.push(
            text.parse::<u64>()
                .map_err(|e| TermproxyError(e.to_string()))?,
        );
        pos += digits + 1;
    }
    Ok(Some((found, pos)))
}

/// Splits the login line `USER:TICKET` (without its newline).
pub fn parse_login(line: &[u8]) -> Result<(String, String), TermproxyError> {
    if line.len() > MAX_LOGIN_LINE {
        return Err(TermproxyError("login line too long".into()));
    }
    let text =
        std::str::from_utf8(line).map_err(|_| TermproxyError("login line is not UTF-8".into()))?;
    match text.split_once(':') {
        Some((user, ticket)) if !user.is_empty() && !ticket.is_empty() => {
            Ok((user.to_owned(), ticket.trim_end_matches('\r').to_owned()))
        }
        _ => Err(TermproxyError("the first line must be USER:TICKET".into())),
    }
}

/// Encodes input the way a termproxy client does (for clients written in Rust and tests).
pub fn encode_input(data: &[u8]) -> Vec<u8> {
    let mut message = format!("0:{}:", data.len()).into_bytes();
    message.extend_from_slice(data);
    message
}

/// Encodes a resize the way a termproxy client does.
pub fn encode_resize(cols: u16, rows: u16) -> Vec<u8> {
    format!("1:{cols}:{rows}:").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(chunks: &[&[u8]]) -> Result<Vec<TermEvent>, TermproxyError> {
        let mut decoder = Decoder::new();
        let mut events = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk);
            while let Some(event) = decoder.next_event()? {
                events.push(event);
            }
        }
        Ok(events)
    }

    fn input(text: &str) -> TermEvent {
        TermEvent::Input(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn decodes_messages_split_and_joined_across_frames() {
        let events = decode_all(&[b"0:5:hel", b"lo1:80:", b"24:20:3:ab", b"c"]).unwrap();
        assert_eq!(
            events,
            vec![
                input("hel"),
                input("lo"),
                TermEvent::Resize { cols: 80, rows: 24 },
                TermEvent::Ping,
                input("ab"),
                input("c"),
            ]
        );
        assert_eq!(decode_all(&[b"0:0:2"]).unwrap(), vec![TermEvent::Ping]);
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in [
            &b"x"[..],
            b"0;5:",
            b"0:5x",
            b"1:0:24:",
            b"1:99999999:1:",
            b"0:12345678901:",
        ] {
            assert!(
                decode_all(&[bad]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(
            decode_all(&[b"0:123"]).unwrap().is_empty(),
            "incomplete is not an error"
        );
    }

    #[test]
    fn login_lines_split_at_the_first_colon() {
        assert_eq!(
            parse_login(b"alice:pct_ab:cd").unwrap(),
            ("alice".into(), "pct_ab:cd".into())
        );
        assert!(parse_login(b"nocolon").is_err());
        assert!(parse_login(b":ticket").is_err());
        assert!(parse_login(&[b'a'; 5000]).is_err());
    }

    proptest! {
        #[test]
        fn round_trips_any_input_in_any_chunking(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            cut in 1usize..50,
        ) {
            let mut stream = encode_input(&data);
            stream.extend(encode_resize(132, 43));
            let chunks: Vec<&[u8]> = stream.chunks(cut).collect();
            let events = decode_all(&chunks).unwrap();
            let mut got = Vec::new();
            for event in &events[..events.len() - 1] {
                match event {
                    TermEvent::Input(bytes) => got.extend_from_slice(bytes),
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            prop_assert_eq!(got, data);
            prop_assert_eq!(events.last(), Some(&TermEvent::Resize { cols: 132, rows: 43 }));
        }

        #[test]
        fn never_panics_and_never_buffers_much(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut decoder = Decoder::new();
            decoder.feed(&bytes);
            let stopped_cleanly = loop {
                match decoder.next_event() {
                    Ok(Some(_)) => {}
                    Ok(None) => break true,
                    Err(_) => break false,
                }
            };
            if stopped_cleanly {
                // Only an incomplete header may wait: type, colon, two numbers and colons.
                let max_header = 2 + 2 * (MAX_NUMBER_DIGITS + 1);
                prop_assert!(decoder.buf.len() <= max_header, "buffered {}", decoder.buf.len());
                if decoder.remaining > 0 {
                    prop_assert!(decoder.buf.is_empty());
                }
            }
        }
    }
}
