//! HL7 v2 message syntax (ER7, the `|^~\&` encoding): delimiters from MSH-1 and MSH-2,
//! the character set of MSH-18, segments, fields, repetitions, components, subcomponents
//! and escape sequences; and the writing side, with escaping.
//!
//! A parsed [`Message`] keeps each segment's text and splits it on demand: reading a value
//! costs a scan of its segment, and a message never takes more memory than its text, however
//! many delimiters it holds. Everything that could fail is checked once, when the message is
//! parsed (segment ids, escape sequences, the character set), so reading a value afterwards
//! cannot fail.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::error::{ErrorCode, Hl7Error, Location};

/// Most segments in one message; more is refused (a message is tens of segments).
pub const MAX_SEGMENTS: usize = 10_000;

/// The delimiters of a message: MSH-1 and the characters of MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delimiters {
    /// Field separator (MSH-1), usually `|`.
    pub field: char,
    /// Component separator, usually `^`.
    pub component: char,
    /// Repetition separator, usually `~`.
    pub repetition: char,
    /// Escape character, usually `\`.
    pub escape: char,
    /// Subcomponent separator, usually `&`.
    pub subcomponent: char,
    /// Truncation character (v2.7, usually `#`), when MSH-2 gives one; it only matters to
    /// the `\P\` escape.
    pub truncation: Option<char>,
}

impl Delimiters {
    /// `|^~\&`, what nearly every sender uses and what answers are written with.
    pub const STANDARD: Delimiters = Delimiters {
        field: '|',
        component: '^',
        repetition: '~',
        escape: '\\',
        subcomponent: '&',
        truncation: None,
    };

    /// MSH-2 as written: component, repetition, escape, subcomponent (and truncation).
    pub fn encoding_characters(&self) -> String {
        let mut s: String = [
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ]
        .into_iter()
        .collect();
        s.extend(self.truncation);
        s
    }

    /// Reads MSH-1 and MSH-2 from the start of a message (`MSH|^~\&|…`).
    fn read(head: &[u8]) -> Result<Delimiters, Hl7Error> {
        let sep = *head
            .get(3)
            .ok_or_else(|| Hl7Error::missing(Location::field("MSH", 1)))?;
        if !usable(sep) {
            return Err(Hl7Error::bad_value(
                Location::field("MSH", 1),
                "not a field separator (a printable ASCII character, not a letter, digit or space)",
            ));
        }
        let enc: Vec<u8> = head[4..]
            .iter()
            .copied()
            .take_while(|&b| b != sep && b != b'\r' && b != b'\n')
            .collect();
        let msh2 = || Location::field("MSH", 2);
        if !(4..=5).contains(&enc.len()) {
            return Err(Hl7Error::bad_value(
                msh2(),
                "expected 4 or 5 encoding characters (component, repetition, escape, subcomponent)",
            ));
        }
        for (i, &b) in enc.iter().enumerate() {
            if !usable(b) || b == sep || enc[..i].contains(&b) {
                return Err(Hl7Error::bad_value(
                    msh2(),
                    "encoding characters must be distinct printable ASCII characters other than letters, digits, spaces and the field separator",
                ));
            }
        }
        Ok(Delimiters {
            field: char::from(sep),
            component: char::from(enc[0]),
            repetition: char::from(enc[1]),
            escape: char::from(enc[2]),
            subcomponent: char::from(enc[3]),
            truncation: enc.get(4).copied().map(char::from),
        })
    }
}

fn usable(b: u8) -> bool {
    b.is_ascii_graphic() && !b.is_ascii_alphanumeric()
}

/// A character set of MSH-18 (HL7 table 0211) that can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    /// `ASCII`: 7-bit only.
    Ascii,
    /// `8859/1`: ISO Latin-1, one byte a character.
    Latin1,
    /// `UNICODE UTF-8`.
    Utf8,
}

/// Names of table 0211 that are known but not read here: refused with their name.
const UNSUPPORTED_CHARSETS: &[&str] = &[
    "8859/2",
    "8859/3",
    "8859/4",
    "8859/5",
    "8859/6",
    "8859/7",
    "8859/8",
    "8859/9",
    "8859/15",
    "ISO IR14",
    "ISO IR87",
    "ISO IR159",
    "UNICODE",
    "UNICODE UTF-16",
    "UNICODE UTF-32",
    "GB 18030-2000",
    "KS X 1001",
    "CNS 11643-1992",
    "BIG-5",
];

impl Charset {
    /// The MSH-18 value naming this character set.
    pub fn name(self) -> &'static str {
        match self {
            Charset::Ascii => "ASCII",
            Charset::Latin1 => "8859/1",
            Charset::Utf8 => "UNICODE UTF-8",
        }
    }

    /// Reads an MSH-18 value: `None` for an empty one (the message is then read as UTF-8,
    /// of which ASCII is a part).
    ///
    /// # Errors
    /// An [`Hl7Error`] on MSH-18 naming a known but unsupported set by its table name, or
    /// saying the value is not in table 0211.
    pub fn from_msh18(value: &str) -> Result<Option<Charset>, Hl7Error> {
        let v = value.trim();
        let loc = || Location::field("MSH", 18);
        match v.to_ascii_uppercase().as_str() {
            "" => Ok(None),
            "ASCII" => Ok(Some(Charset::Ascii)),
            "8859/1" => Ok(Some(Charset::Latin1)),
            "UNICODE UTF-8" | "UTF-8" => Ok(Some(Charset::Utf8)),
            up => match UNSUPPORTED_CHARSETS.iter().find(|n| **n == up) {
                Some(name) => Err(Hl7Error::new(
                    loc(),
                    ErrorCode::TableValueNotFound,
                    format!(
                        "character set {name} is not supported (ASCII, 8859/1 and UNICODE UTF-8 are)"
                    ),
                )),
                None => Err(Hl7Error::new(
                    loc(),
                    ErrorCode::TableValueNotFound,
                    "not a character set of HL7 table 0211",
                )),
            },
        }
    }

    /// The text of `bytes` in this character set (`None`: undeclared, read as UTF-8).
    fn decode(set: Option<Charset>, bytes: &[u8]) -> Result<String, Hl7Error> {
        let loc = || Location::field("MSH", 18);
        match set {
            Some(Charset::Latin1) => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
            Some(Charset::Ascii) if !bytes.is_ascii() => Err(Hl7Error::new(
                loc(),
                ErrorCode::DataType,
                "the message has bytes outside ASCII; declare 8859/1 or UNICODE UTF-8",
            )),
            Some(Charset::Ascii | Charset::Utf8) => String::from_utf8(bytes.to_vec())
                .map_err(|_| Hl7Error::new(loc(), ErrorCode::DataType, "not valid UTF-8")),
            None => String::from_utf8(bytes.to_vec()).map_err(|_| {
                Hl7Error::new(
                    loc(),
                    ErrorCode::DataType,
                    "the message is not valid UTF-8 and MSH-18 declares no character set; declare 8859/1",
                )
            }),
        }
    }

    /// `text` as bytes in this character set. Characters Latin-1 cannot hold become `?`;
    /// callers choose UTF-8 for text outside ASCII (see [`Charset::for_answer`]).
    pub fn encode(set: Option<Charset>, text: &str) -> Vec<u8> {
        match set {
            Some(Charset::Latin1) => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
            _ => text.as_bytes().to_vec(),
        }
    }

    /// The character set to answer a message in: the request's, unless `text` does not fit
    /// it, then UTF-8.
    pub fn for_answer(request: Option<Charset>, text: &str) -> Option<Charset> {
        let fits = match request {
            None | Some(Charset::Ascii) => text.is_ascii(),
            Some(Charset::Latin1) => text.chars().all(|c| u32::from(c) <= 0xFF),
            Some(Charset::Utf8) => true,
        };
        if fits {
            request
        } else {
            Some(Charset::Utf8)
        }
    }
}

/// One segment: its id and its text, split on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    id: String,
    /// The whole line, id included.
    raw: String,
    delimiters: Delimiters,
    charset: Option<Charset>,
}

impl Segment {
    /// The segment id, e.g. `PID`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The segment as received.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The raw text of field `n` (1-based), escapes not decoded; `""` when absent. MSH-1 is
    /// the field separator and MSH-2 the encoding characters, as the standard counts them.
    fn field_raw(&self, n: usize) -> &str {
        if n == 0 {
            return "";
        }
        if self.id == "MSH" {
            match n {
                // MSH-1 is the separator itself: the one character after `MSH`.
                1 => return &self.raw[3..3 + self.delimiters.field.len_utf8()],
                _ => {
                    return self
                        .raw
                        .split(self.delimiters.field)
                        .nth(n - 1)
                        .unwrap_or("")
                }
            }
        }
        self.raw.split(self.delimiters.field).nth(n).unwrap_or("")
    }

    /// How many fields the segment has (the last non-empty one's number).
    pub fn field_count(&self) -> usize {
        let parts = self.raw.split(self.delimiters.field).count();
        let n = if self.id == "MSH" { parts } else { parts - 1 };
        (1..=n)
            .rev()
            .find(|&i| !self.field_raw(i).is_empty())
            .unwrap_or(0)
    }

    /// How many repetitions field `f` has (0 when it is empty).
    pub fn repetitions(&self, f: usize) -> usize {
        let raw = self.field_raw(f);
        if raw.is_empty() {
            0
        } else if self.id == "MSH" && f <= 2 {
            1
        } else {
            raw.split(self.delimiters.repetition).count()
        }
    }

    /// How many components repetition `r` of field `f` has (0 when it is empty).
    pub fn components(&self, f: usize, r: usize) -> usize {
        let rep = self.rep_raw(f, r);
        if rep.is_empty() {
            0
        } else {
            rep.split(self.delimiters.component).count()
        }
    }

    fn rep_raw(&self, f: usize, r: usize) -> &str {
        let raw = self.field_raw(f);
        if r == 0 {
            return "";
        }
        if self.id == "MSH" && f <= 2 {
            return if r == 1 { raw } else { "" };
        }
        raw.split(self.delimiters.repetition)
            .nth(r - 1)
            .unwrap_or("")
    }

    fn leaf_raw(&self, f: usize, r: usize, c: usize, s: usize) -> &str {
        if self.id == "MSH" && f <= 2 {
            return if (r, c, s) == (1, 1, 1) {
                self.field_raw(f)
            } else {
                ""
            };
        }
        let d = &self.delimiters;
        let rep = self.rep_raw(f, r);
        let comp = match c {
            0 => return "",
            _ => rep.split(d.component).nth(c - 1).unwrap_or(""),
        };
        match s {
            0 => "",
            _ => comp.split(d.subcomponent).nth(s - 1).unwrap_or(""),
        }
    }

    /// The value at field `f`, repetition `r`, component `c`, subcomponent `s` (all
    /// 1-based), escapes decoded; `""` when absent. The HL7 null `""` (two quotes, "delete
    /// the value") reads as empty too: a record holds no deleted values.
    pub fn get(&self, f: usize, r: usize, c: usize, s: usize) -> Cow<'_, str> {
        let raw = self.leaf_raw(f, r, c, s);
        if raw == "\"\"" {
            return Cow::Borrowed("");
        }
        if self.id == "MSH" && f <= 2 {
            return Cow::Borrowed(raw);
        }
        // Checked when the message was parsed, so this cannot fail.
        unescape(raw, &self.delimiters, self.charset).unwrap_or(Cow::Borrowed(""))
    }

    /// The first value of field `f` (first repetition, component and subcomponent).
    pub fn first(&self, f: usize) -> Cow<'_, str> {
        self.get(f, 1, 1, 1)
    }

    /// Component `c` of the first repetition of field `f` (its first subcomponent).
    pub fn component(&self, f: usize, c: usize) -> Cow<'_, str> {
        self.get(f, 1, c, 1)
    }

    /// Field `f` re-written with other delimiters (values decoded, then escaped again).
    pub fn field_encoded(&self, f: usize, out: &Delimiters) -> String {
        let reps = (1..=self.repetitions(f)).map(|r| {
            let comps = (1..=self.components(f, r)).map(|c| {
                let subs = self
                    .rep_raw(f, r)
                    .split(self.delimiters.component)
                    .nth(c - 1)
                    .unwrap_or("")
                    .split(self.delimiters.subcomponent)
                    .count();
                join_trimmed(
                    (1..=subs).map(|s| escape(&self.get(f, r, c, s), out)),
                    out.subcomponent,
                )
            });
            join_trimmed(comps, out.component)
        });
        join_trimmed(reps, out.repetition)
    }

    /// The segment re-written with other delimiters (values decoded, then escaped again).
    pub fn encode_with(&self, out: &Delimiters) -> String {
        if self.delimiters == *out {
            return self.raw.clone();
        }
        let mut w = SegmentWriter::new(&self.id);
        let first = if self.id == "MSH" { 3 } else { 1 };
        for f in first..=self.field_count() {
            w.set_encoded(f, self.field_encoded(f, out));
        }
        w.finish(out)
    }

    /// Checks every value of the segment: escapes decodable.
    fn check(&self, sequence: u32) -> Result<(), Hl7Error> {
        let d = &self.delimiters;
        let first = if self.id == "MSH" { 3 } else { 1 };
        for (i, field) in self.raw.split(d.field).enumerate() {
            // Split index i is field i (field i + 1 in MSH, where the separator is MSH-1).
            let f = if self.id == "MSH" { i + 1 } else { i };
            if f < first || !field.contains(d.escape) {
                continue;
            }
            for (r, rep) in field.split(d.repetition).enumerate() {
                for (c, comp) in rep.split(d.component).enumerate() {
                    for (s, sub) in comp.split(d.subcomponent).enumerate() {
                        unescape(sub, d, self.charset).map_err(|reason| {
                            let loc = Location {
                                segment: self.id.clone(),
                                sequence,
                                field: to_u32(f),
                                repetition: to_u32(r + 1),
                                // Narrowed only as far as the value is divided.
                                component: if rep.contains(d.component) {
                                    to_u32(c + 1)
                                } else {
                                    0
                                },
                                subcomponent: if comp.contains(d.subcomponent) {
                                    to_u32(s + 1)
                                } else {
                                    0
                                },
                            };
                            Hl7Error::bad_value(loc, reason)
                        })?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A parsed message: its delimiters, character set and segments (MSH first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    delimiters: Delimiters,
    charset: Option<Charset>,
    segments: Vec<Segment>,
}

impl Message {
    /// Parses a message (the content of one MLLP frame). Segments may end in CR, LF or
    /// CRLF; blank lines and a UTF-8 byte-order mark are skipped.
    ///
    /// # Errors
    /// An [`Hl7Error`] naming the position: no MSH first, unusable delimiters (MSH-1,
    /// MSH-2), an unreadable or unsupported character set (MSH-18), a line that is not a
    /// segment, a malformed escape sequence, or more than [`MAX_SEGMENTS`] segments.
    pub fn parse(bytes: &[u8]) -> Result<Message, Hl7Error> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let start = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(bytes.len());
        let bytes = &bytes[start..];
        if !bytes.starts_with(b"MSH") {
            return Err(Hl7Error::new(
                Location::segment("MSH"),
                ErrorCode::SegmentSequence,
                "missing: a message starts with an MSH segment",
            ));
        }
        let delimiters = Delimiters::read(bytes)?;
        let charset = Charset::from_msh18(&sniff_msh18(bytes, &delimiters))?;
        let text = Charset::decode(charset, bytes)?;
        let mut segments: Vec<Segment> = Vec::new();
        for (n, line) in text.split(['\r', '\n']).enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if segments.len() == MAX_SEGMENTS {
                return Err(Hl7Error::new(
                    Location::message(),
                    ErrorCode::SegmentSequence,
                    format!("more than {MAX_SEGMENTS} segments"),
                ));
            }
            let id: String = line.chars().take(3).collect();
            let valid_id = id.len() == 3
                && id.as_bytes()[0].is_ascii_uppercase()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            let rest = &line[id.len()..];
            if !valid_id || !(rest.is_empty() || rest.starts_with(delimiters.field)) {
                return Err(Hl7Error::new(
                    Location::line(n + 1),
                    ErrorCode::SegmentSequence,
                    "not a segment (three capital letters or digits, then the field separator)",
                ));
            }
            if id == "MSH" && !segments.is_empty() {
                return Err(Hl7Error::new(
                    Location::line(n + 1),
                    ErrorCode::SegmentSequence,
                    "a second MSH: batches are not supported, send one message a frame",
                ));
            }
            let seg = Segment {
                id,
                raw: line.to_string(),
                delimiters,
                charset,
            };
            let sequence = segments.iter().filter(|s| s.id == seg.id).count() + 1;
            seg.check(to_u32(sequence))?;
            segments.push(seg);
        }
        Ok(Message {
            delimiters,
            charset,
            segments,
        })
    }

    /// The delimiters the message was written with.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    /// The character set MSH-18 declares (`None`: not declared).
    pub fn charset(&self) -> Option<Charset> {
        self.charset
    }

    /// The MSH segment (always the first).
    pub fn msh(&self) -> &Segment {
        &self.segments[0]
    }

    /// All segments in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// Every segment with this id, in order.
    pub fn segments_named<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Segment> {
        self.segments.iter().filter(move |s| s.id == id)
    }

    /// The message's text with segments ended by CR, re-written with `out` delimiters.
    pub fn encode_with(&self, out: &Delimiters) -> String {
        let mut s = String::new();
        for seg in &self.segments {
            s.push_str(&seg.encode_with(out));
            s.push('\r');
        }
        s
    }

    /// SHA-256 of the message with MSH-7 (the time of sending) left out: a sender that
    /// re-sends a message it got no answer for may stamp it anew, and it is still the same
    /// message.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for seg in &self.segments {
            if seg.id == "MSH" {
                for (i, f) in seg.raw.split(self.delimiters.field).enumerate() {
                    // Split index 6 is MSH-7.
                    if i != 6 {
                        h.update(f.as_bytes());
                    }
                    h.update([0]);
                }
            } else {
                h.update(seg.raw.as_bytes());
            }
            h.update(b"\r");
        }
        h.finalize().into()
    }
}

/// MSH-18's first repetition and component, read from the raw first line (before the
/// character set is known; MSH itself is ASCII).
fn sniff_msh18(bytes: &[u8], d: &Delimiters) -> String {
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    let line = &bytes[..line_end];
    // Split index 17 is MSH-18 (index 0 is `MSH`, index 1 is MSH-2).
    let field = line
        .split(|&b| char::from(b) == d.field)
        .nth(17)
        .unwrap_or(b"");
    let first = field
        .split(|&b| char::from(b) == d.repetition || char::from(b) == d.component)
        .next()
        .unwrap_or(b"");
    String::from_utf8_lossy(first).into_owned()
}

/// Decodes the escape sequences of one value: `\F\ \S\ \T\ \R\ \E\` (the delimiters),
/// `\P\` (truncation), `\Xhh…\` (bytes in the message's character set), `\.br\` and `\.sp\`
/// (a line break); other formatting commands (`\.in\`, `\.ti\`, `\.ce\`, `\.fi\`, `\.nf\`,
/// `\.sk\`, `\H\`, `\N\`) are dropped, and a sequence that is unterminated or unknown (`\Z…\`)
/// is kept as text.
///
/// # Errors
/// The reason, for a `\X…\` that is not hexadecimal bytes of the character set, and for the
/// character-set switches `\C…\` and `\M…\`, which are not supported.
fn unescape<'a>(
    raw: &'a str,
    d: &Delimiters,
    charset: Option<Charset>,
) -> Result<Cow<'a, str>, &'static str> {
    if !raw.contains(d.escape) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(d.escape) {
        out.push_str(&rest[..i]);
        let after = &rest[i + d.escape.len_utf8()..];
        let Some(j) = after.find(d.escape) else {
            // Unterminated: the escape character stands for itself.
            out.push_str(&rest[i..]);
            return Ok(Cow::Owned(out));
        };
        let seq = &after[..j];
        let mut consumed = true;
        match seq {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(d.escape),
            "P" => match d.truncation {
                Some(t) => out.push(t),
                None => consumed = false,
            },
            "H" | "N" => {}
            s if s.starts_with(".br") || s.starts_with(".sp") => out.push('\n'),
            s if [".in", ".ti", ".ce", ".fi", ".nf", ".sk"]
                .iter()
                .any(|p| s.starts_with(p)) => {}
            s if s.starts_with('X') => out.push_str(&hex_bytes(&s[1..], charset)?),
            s if s.starts_with('C') || s.starts_with('M') => {
                return Err("character set switching escapes are not supported");
            }
            _ => consumed = false,
        }
        if consumed {
            rest = &after[j + d.escape.len_utf8()..];
        } else {
            // Unknown: keep the opening escape character as text and go on after it.
            out.push(d.escape);
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

fn hex_bytes(hex: &str, charset: Option<Charset>) -> Result<String, &'static str> {
    const BAD: &str = "malformed \\X escape: expected pairs of hexadecimal digits";
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(BAD);
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| BAD))
        .collect::<Result<_, _>>()?;
    match charset {
        Some(Charset::Latin1) => Ok(bytes.into_iter().map(char::from).collect()),
        _ => String::from_utf8(bytes).map_err(|_| "\\X escape is not valid UTF-8"),
    }
}

/// `value` with every delimiter and the escape character written as its escape sequence,
/// and control characters as `\Xhh\`, so it can stand in any field.
pub fn escape(value: &str, d: &Delimiters) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let e = d.escape;
        if c == d.field {
            let _ = write!(out, "{e}F{e}");
        } else if c == d.component {
            let _ = write!(out, "{e}S{e}");
        } else if c == d.subcomponent {
            let _ = write!(out, "{e}T{e}");
        } else if c == d.repetition {
            let _ = write!(out, "{e}R{e}");
        } else if c == e {
            let _ = write!(out, "{e}E{e}");
        } else if c.is_control() {
            let mut buf = [0u8; 4];
            let _ = write!(out, "{e}X");
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "{b:02X}");
            }
            out.push(e);
        } else {
            out.push(c);
        }
    }
    out
}

/// Joins encoded parts with `sep`, dropping empty trailing parts (HL7 leaves them out).
pub(crate) fn join_trimmed(parts: impl IntoIterator<Item = String>, sep: char) -> String {
    let mut parts: Vec<String> = parts.into_iter().collect();
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts.join(&sep.to_string())
}

/// Writes one segment with [`Delimiters::STANDARD`]-style output: fields are set by number
/// (already encoded), empty trailing fields are left out.
#[derive(Debug, Clone)]
pub(crate) struct SegmentWriter {
    id: String,
    /// `fields[0]` is field 1.
    fields: Vec<String>,
}

impl SegmentWriter {
    pub(crate) fn new(id: &str) -> Self {
        SegmentWriter {
            id: id.to_string(),
            fields: Vec::new(),
        }
    }

    /// Sets field `n` (1-based) to already-encoded text.
    pub(crate) fn set_encoded(&mut self, n: usize, encoded: String) -> &mut Self {
        if self.fields.len() < n {
            self.fields.resize(n, String::new());
        }
        self.fields[n - 1] = encoded;
        self
    }

    /// Sets field `n` to one plain value, escaped.
    pub(crate) fn set(&mut self, n: usize, value: &str, d: &Delimiters) -> &mut Self {
        self.set_encoded(n, escape(value, d))
    }

    /// Sets field `n` to one repetition of components, each escaped.
    pub(crate) fn set_components(&mut self, n: usize, comps: &[&str], d: &Delimiters) -> &mut Self {
        self.set_encoded(n, components(comps, d))
    }

    /// The segment's text (no segment terminator). For MSH, fields 1 and 2 are the
    /// delimiters themselves and what was set for them is ignored.
    pub(crate) fn finish(&self, d: &Delimiters) -> String {
        let mut out = self.id.clone();
        let skip = if self.id == "MSH" {
            out.push(d.field);
            out.push_str(&d.encoding_characters());
            2
        } else {
            0
        };
        let mut fields: Vec<&str> = self.fields.iter().skip(skip).map(String::as_str).collect();
        while fields.last().is_some_and(|f| f.is_empty()) {
            fields.pop();
        }
        for f in fields {
            out.push(d.field);
            out.push_str(f);
        }
        out
    }
}

/// One repetition of components, each escaped, trailing empty ones left out.
pub(crate) fn components(comps: &[&str], d: &Delimiters) -> String {
    join_trimmed(comps.iter().map(|c| escape(c, d)), d.component)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Message, Hl7Error> {
        Message::parse(text.as_bytes())
    }

    const ADT: &str =
        "MSH|^~\\&|ADT1|GOOD HEALTH|EMPI|CITY|20240102103000||ADT^A04^ADT_A01|MSG00001|P|2.5\r\
        EVN|A04|20240102103000\r\
        PID|1||12345^^^HOSP&1.2.3&ISO^MR~999-22-3333^^^SSA^SS||O'Brien&Van^Mary^Ann||19560314|F\r";

    #[test]
    fn fields_repetitions_components_subcomponents() {
        let m = parse(ADT).unwrap();
        assert_eq!(m.segments().len(), 3);
        let msh = m.msh();
        assert_eq!(msh.first(1), "|");
        assert_eq!(msh.first(2), "^~\\&");
        assert_eq!(msh.first(3), "ADT1");
        assert_eq!(msh.component(9, 2), "A04");
        assert_eq!(msh.first(10), "MSG00001");
        assert_eq!(msh.first(12), "2.5");
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.repetitions(3), 2);
        assert_eq!(pid.get(3, 1, 4, 2), "1.2.3");
        assert_eq!(pid.get(3, 2, 5, 1), "SS");
        assert_eq!(pid.get(5, 1, 1, 1), "O'Brien");
        assert_eq!(pid.get(5, 1, 1, 2), "Van");
        assert_eq!(pid.component(5, 3), "Ann");
        assert_eq!(pid.first(99), "");
        assert_eq!(pid.get(3, 7, 1, 1), "");
        assert_eq!(pid.field_count(), 8);
    }

    #[test]
    fn any_delimiters_and_line_endings() {
        let text = "MSH#*!$%#ADT1#F###20240102##ADT*A08#C1#P#2.3.1\r\n\
                    PID#1##A1*%*%*H1$x##Smith*Jo!Smyth*Joe\n\nPV1#1\r";
        let m = parse(text).unwrap();
        assert_eq!(
            *m.delimiters(),
            Delimiters {
                field: '#',
                component: '*',
                repetition: '!',
                escape: '$',
                subcomponent: '%',
                truncation: None
            }
        );
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.components(3, 1), 4);
        assert_eq!(
            pid.get(3, 1, 4, 1),
            "H1$x",
            "an unterminated escape is kept as text"
        );
        assert_eq!(pid.get(5, 2, 1, 1), "Smyth");
        assert_eq!(m.segments().len(), 3);
        // Re-written with the standard delimiters, values survive.
        let std = m.encode_with(&Delimiters::STANDARD);
        let again = Message::parse(std.as_bytes()).unwrap();
        assert_eq!(again.segment("PID").unwrap().get(5, 2, 2, 1), "Joe");
        assert!(std.starts_with("MSH|^~\\&|ADT1|F|||20240102||ADT^A08|C1|P|2.3.1\r"));
    }

    #[test]
    fn escape_sequences() {
        let cases: &[(&str, &str)] = &[
            ("a\\F\\b", "a|b"),
            ("a\\S\\b\\T\\c\\R\\d\\E\\e", "a^b&c~d\\e"),
            ("line\\.br\\next", "line\nnext"),
            ("\\H\\bold\\N\\", "bold"),
            ("caf\\XC3A9\\", "café"),
            ("\\Zlocal\\", "\\Zlocal\\"),
            ("trailing\\", "trailing\\"),
            ("\\P\\", "\\P\\"),
        ];
        for (raw, want) in cases {
            let text = format!("MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5\rPID|1||x||{raw}\r");
            let m = parse(&text).unwrap();
            assert_eq!(m.segment("PID").unwrap().first(5), *want, "{raw}");
        }
        for (raw, loc) in [("\\XZZ\\", "PID-5"), ("a^b&\\X1\\", "PID-5.2.2")] {
            let text = format!("MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5\rPID|1||x||{raw}\r");
            let e = parse(&text).unwrap_err();
            assert_eq!(e.location.to_string(), loc, "{raw}");
            assert!(e.reason.contains("\\X"), "{e}");
        }
        let e = parse("MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5\rPID|1||\\C2842\\\r").unwrap_err();
        assert!(e.reason.contains("switching"), "{e}");
        // Escaping is undone by unescaping, with any delimiters.
        let d = Delimiters::STANDARD;
        let v = "a|b^c&d~e\\f\rg";
        let text = format!(
            "MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5\rPID|1||{}\r",
            escape(v, &d)
        );
        assert_eq!(parse(&text).unwrap().segment("PID").unwrap().first(3), v);
    }

    #[test]
    fn character_sets() {
        let latin1: Vec<u8> =
            b"MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5||||||8859/1\rPID|1||x||M\xFCller\\XE9\\\r".to_vec();
        let m = Message::parse(&latin1).unwrap();
        assert_eq!(m.charset(), Some(Charset::Latin1));
        assert_eq!(m.segment("PID").unwrap().first(5), "Mülleré");
        let utf8 = "MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5||||||UNICODE UTF-8\rPID|1||x||Müller\r";
        assert_eq!(
            parse(utf8).unwrap().segment("PID").unwrap().first(5),
            "Müller"
        );
        // Undeclared: UTF-8 is read, other bytes are refused with advice.
        let e = Message::parse(b"MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5\rPID|1||x||M\xFCller\r")
            .unwrap_err();
        assert_eq!(e.location.to_string(), "MSH-18");
        assert!(e.reason.contains("8859/1"), "{e}");
        let e =
            Message::parse(b"MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5||||||ASCII\rPID|1||x||\xC3\xA9\r")
                .unwrap_err();
        assert!(e.reason.contains("outside ASCII"), "{e}");
        let e = parse("MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5||||||UNICODE UTF-16\r").unwrap_err();
        assert!(e.reason.contains("UNICODE UTF-16 is not supported"), "{e}");
        let e = parse("MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5||||||KLINGON\r").unwrap_err();
        assert!(!e.reason.contains("KLINGON"), "{e}");
        // Answers fall back to UTF-8 only when the text does not fit.
        assert_eq!(Charset::for_answer(None, "abc"), None);
        assert_eq!(Charset::for_answer(None, "é"), Some(Charset::Utf8));
        assert_eq!(
            Charset::for_answer(Some(Charset::Latin1), "é"),
            Some(Charset::Latin1)
        );
        assert_eq!(
            Charset::encode(Some(Charset::Latin1), "é€"),
            vec![0xE9, b'?']
        );
    }

    #[test]
    fn bad_starts_and_lines_name_the_position() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "MSH"),
            (b"PID|1||x\r", "MSH"),
            (b"MSH", "MSH-1"),
            (b"MSHA^~\\&|x", "MSH-1"),
            (b"MSH ^~\\&", "MSH-1"),
            (b"MSH|^~|A", "MSH-2"),
            (b"MSH|^^\\&|A", "MSH-2"),
            (b"MSH|^|\\&|A", "MSH-2"),
            (b"MSH|^~\\&|A\rpid|1\r", "segment 2"),
            (b"MSH|^~\\&|A\rPID^1\r", "segment 2"),
            (b"MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\r", "segment 3"),
        ];
        for (bytes, loc) in cases {
            let e = Message::parse(bytes).unwrap_err();
            assert_eq!(
                e.location.to_string(),
                *loc,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn digest_ignores_the_time_of_sending_only() {
        let a = parse("MSH|^~\\&|A|B|||20240101||ADT^A04|1|P|2.5\rPID|1||x\r").unwrap();
        let b = parse("MSH|^~\\&|A|B|||20240102||ADT^A04|1|P|2.5\nPID|1||x\n").unwrap();
        let c = parse("MSH|^~\\&|A|B|||20240101||ADT^A04|1|P|2.5\rPID|1||y\r").unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn writer_trims_and_escapes() {
        let d = Delimiters::STANDARD;
        let mut w = SegmentWriter::new("PID");
        w.set(3, "a|b", &d)
            .set_components(5, &["Smith", "Jo^e", "", ""], &d)
            .set(9, "", &d);
        assert_eq!(w.finish(&d), "PID|||a\\F\\b||Smith^Jo\\S\\e");
        let mut msh = SegmentWriter::new("MSH");
        msh.set(3, "EMPI", &d).set(12, "2.5", &d);
        assert_eq!(msh.finish(&d), "MSH|^~\\&|EMPI|||||||||2.5");
    }
}
