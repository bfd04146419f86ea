//! MLLP, the Minimal Lower Layer Protocol that carries HL7 v2 over TCP: each message is
//! framed as `0x0B` (start block), the message, `0x1C 0x0D` (end block, carriage return).
//!
//! [`MllpDecoder`] is a streaming decoder: bytes go in as the socket gives them, in pieces
//! of any size; whole frames (and framing errors) come out. It holds at most one frame, of
//! at most the configured size, so a peer cannot make it buffer without bound. Between
//! frames, whitespace is ignored and other bytes are skipped and counted. A frame cut short
//! by a new start block, a frame past the size limit, and an end block not followed by a
//! carriage return are each reported once, as an error, and decoding goes on with the next
//! frame: one bad frame does not end the connection.

use crate::error::{Error, Result};

/// Start block.
pub const START_BLOCK: u8 = 0x0B;
/// End block (followed by [`CARRIAGE_RETURN`]).
pub const END_BLOCK: u8 = 0x1C;
/// The carriage return after the end block.
pub const CARRIAGE_RETURN: u8 = 0x0D;
/// The frame size limit [`MllpDecoder::default`] uses: 1 MiB, far above any ADT or query.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames.
    Idle,
    /// Inside a frame.
    Frame,
    /// After an end block, expecting the carriage return.
    End,
    /// Inside a frame already reported too long: discarding until its end.
    Discard,
    /// After an end block in a discarded frame.
    DiscardEnd,
}

/// Streaming MLLP decoder; see the module docs.
#[derive(Debug, Clone)]
pub struct MllpDecoder {
    max_frame: usize,
    state: State,
    buf: Vec<u8>,
    skipped: u64,
}

impl Default for MllpDecoder {
    fn default() -> Self {
        MllpDecoder::new(DEFAULT_MAX_FRAME)
    }
}

fn framing(reason: &'static str) -> Error {
    Error::invalid("mllp frame", reason)
}

impl MllpDecoder {
    /// A decoder refusing frames longer than `max_frame` bytes (the message, without the
    /// framing bytes).
    pub fn new(max_frame: usize) -> Self {
        MllpDecoder {
            max_frame,
            state: State::Idle,
            buf: Vec::new(),
            skipped: 0,
        }
    }

    /// Bytes seen outside frames that were not whitespace, so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// True while a frame has begun and not ended (a connection closing now cuts it short).
    pub fn in_frame(&self) -> bool {
        self.state != State::Idle
    }

    /// Decodes `data`, the next bytes of the stream: every frame it completes, in order,
    /// and an error for each broken one.
    ///
    /// Errors are [`Error::InvalidInput`] naming `mllp frame`.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Result<Vec<u8>>> {
        let mut out = Vec::new();
        while !data.is_empty() {
            match self.state {
                State::Idle => {
                    let start = data.iter().position(|&b| b == START_BLOCK);
                    let garbage = &data[..start.unwrap_or(data.len())];
                    self.skipped +=
                        garbage.iter().filter(|b| !b.is_ascii_whitespace()).count() as u64;
                    match start {
                        Some(i) => {
                            self.state = State::Frame;
                            self.buf.clear();
                            data = &data[i + 1..];
                        }
                        None => data = &[],
                    }
                }
                State::Frame | State::Discard => {
                    let stop = data
                        .iter()
                        .position(|&b| b == START_BLOCK || b == END_BLOCK);
                    let chunk = &data[..stop.unwrap_or(data.len())];
                    if self.state == State::Frame {
                        if self.buf.len() + chunk.len() > self.max_frame {
                            out.push(Err(self.too_long()));
                            self.buf = Vec::new();
                            self.state = State::Discard;
                        } else {
                            self.buf.extend_from_slice(chunk);
                        }
                    }
                    let Some(i) = stop else {
                        data = &[];
                        continue;
                    };
                    if data[i] == START_BLOCK {
                        if self.state == State::Frame {
                            out.push(Err(framing(
                                "cut short: a start block came before the end block",
                            )));
                        }
                        self.state = State::Frame;
                        self.buf.clear();
                    } else {
                        self.state = if self.state == State::Frame {
                            State::End
                        } else {
                            State::DiscardEnd
                        };
                    }
                    data = &data[i + 1..];
                }
                State::End | State::DiscardEnd => {
                    let complete = self.state == State::End;
                    if data[0] == CARRIAGE_RETURN {
                        if complete {
                            out.push(Ok(std::mem::take(&mut self.buf)));
                        }
                        data = &data[1..];
                    } else if complete {
                        out.push(Err(framing("end block not followed by a carriage return")));
                    }
                    // A start block right after is the next frame; anything else is skipped.
                    self.state = State::Idle;
                    self.buf.clear();
                }
            }
        }
        out
    }

    fn too_long(&self) -> Error {
        Error::InvalidInput {
            key: None,
            field: "mllp frame".into(),
            reason: format!("longer than {} bytes", self.max_frame).into(),
        }
    }

    /// The stream has ended: an error when it ended inside a frame. The decoder is ready
    /// for a new stream afterwards.
    pub fn finish(&mut self) -> Option<Error> {
        let cut = matches!(self.state, State::Frame | State::End);
        self.state = State::Idle;
        self.buf = Vec::new();
        cut.then(|| framing("cut short: the stream ended inside a frame"))
    }
}

/// `message` framed for sending.
///
/// # Errors
/// [`Error::InvalidInput`] naming `mllp frame` when the message holds a start or end block
/// byte, which no HL7 text does and which would break the framing.
pub fn encode(message: &[u8]) -> Result<Vec<u8>> {
    if message.iter().any(|&b| b == START_BLOCK || b == END_BLOCK) {
        return Err(framing("the message holds a start or end block byte"));
    }
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START_BLOCK);
    out.extend_from_slice(message);
    out.extend_from_slice(&[END_BLOCK, CARRIAGE_RETURN]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a decoder makes of a stream: frames as text, errors as `!reason`.
    fn decode(stream: &[u8], max: usize, chunk: usize) -> (Vec<String>, u64) {
        let mut d = MllpDecoder::new(max);
        let mut out = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            out.extend(d.push(piece));
        }
        let mut seen: Vec<String> = out
            .into_iter()
            .map(|r| match r {
                Ok(f) => String::from_utf8_lossy(&f).into_owned(),
                Err(e) => format!("!{e}"),
            })
            .collect();
        if let Some(e) = d.finish() {
            seen.push(format!("!{e}"));
        }
        (seen, d.skipped())
    }

    #[test]
    fn framing_table() {
        let cut = "!mllp frame: cut short: a start block came before the end block";
        let eof = "!mllp frame: cut short: the stream ended inside a frame";
        let no_cr = "!mllp frame: end block not followed by a carriage return";
        let long = "!mllp frame: longer than 8 bytes";
        let cases: &[(&str, &[u8], &[&str], u64)] = &[
            ("one frame", b"\x0bMSH|a\x1c\x0d", &["MSH|a"], 0),
            ("two frames", b"\x0bA\x1c\x0d\x0bB\x1c\x0d", &["A", "B"], 0),
            ("empty frame", b"\x0b\x1c\x0d", &[""], 0),
            (
                "whitespace between",
                b"\r\n\x0bA\x1c\x0d\n\x0bB\x1c\x0d",
                &["A", "B"],
                0,
            ),
            (
                "garbage between",
                b"xx\x0bA\x1c\x0dyyy\x0bB\x1c\x0d",
                &["A", "B"],
                5,
            ),
            (
                "truncated at end of stream",
                b"\x0bA\x1c\x0d\x0bMSH|",
                &["A", eof],
                0,
            ),
            (
                "truncated by a new start",
                b"\x0bMSH|\x0bB\x1c\x0d",
                &[cut, "B"],
                0,
            ),
            (
                "end without cr",
                b"\x0bA\x1cX\x0bB\x1c\x0d",
                &[no_cr, "B"],
                1,
            ),
            (
                "end without cr, then start",
                b"\x0bA\x1c\x0bB\x1c\x0d",
                &[no_cr, "B"],
                0,
            ),
            ("end block at end of stream", b"\x0bA\x1c", &[eof], 0),
            (
                "too long, then fine",
                b"\x0b123456789\x1c\x0d\x0bshort\x1c\x0d",
                &[long, "short"],
                0,
            ),
            (
                "exactly the limit",
                b"\x0b12345678\x1c\x0d",
                &["12345678"],
                0,
            ),
            (
                "too long and cut",
                b"\x0b123456789\x0bok\x1c\x0d",
                &[long, "ok"],
                0,
            ),
            ("no frame at all", b"hello", &[], 5),
        ];
        for (name, stream, want, skipped) in cases {
            // Every way of cutting the stream into pieces gives the same result.
            for chunk in 1..=stream.len().max(1) {
                let (got, sk) = decode(stream, 8, chunk);
                assert_eq!(got, *want, "{name}, pieces of {chunk}");
                assert_eq!(sk, *skipped, "{name}, pieces of {chunk}");
            }
        }
    }

    #[test]
    fn encode_frames_and_refuses_framing_bytes() {
        let framed = encode(b"MSH|x\r").unwrap();
        assert_eq!(framed, b"\x0bMSH|x\r\x1c\x0d");
        let (got, _) = decode(&framed, 100, 3);
        assert_eq!(got, vec!["MSH|x\r"]);
        assert!(encode(b"a\x1cb").is_err());
        assert!(encode(b"a\x0bb").is_err());
    }

    #[test]
    fn a_huge_frame_is_not_buffered() {
        let mut d = MllpDecoder::new(1024);
        let mut errors = 0;
        errors += d.push(&[START_BLOCK]).len();
        for _ in 0..1024 {
            errors += d.push(&[b'x'; 1024]).len();
            assert!(d.buf.capacity() <= 2048);
        }
        assert_eq!(errors, 1, "reported once");
        assert_eq!(
            d.push(b"\x1c\x0d\x0bok\x1c\x0d")
                .into_iter()
                .map(|r| r.unwrap())
                .collect::<Vec<_>>(),
            vec![b"ok".to_vec()]
        );
    }
}
