//! From a file's bytes to CSV text: its encoding, a byte-order mark, and the delimiter
//! between its fields.
//!
//! Exports from hospital systems come in UTF-8 (often with a byte-order mark when Excel
//! wrote them) or in Windows-1252, the Latin-1 superset of older systems; their fields are
//! separated by commas, semicolons (where the comma is the decimal mark), tabs or pipes.

use std::io::{self, BufRead, BufReader, Read};
use std::str::FromStr;

use crate::error::{Error, Result};

/// The text encoding of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8; a leading byte-order mark is skipped.
    #[default]
    Utf8,
    /// Windows-1252: ISO-8859-1 (Latin-1) with printable characters in 0x80–0x9F, as
    /// Excel and older systems write it. Every byte is a character, so reading never fails.
    Windows1252,
}

impl Encoding {
    /// The name used in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1252 => "windows-1252",
        }
    }
}

impl FromStr for Encoding {
    type Err = Error;

    /// `utf-8` (or `utf8`); `latin1`, `latin-1`, `iso-8859-1`, `windows-1252` or `cp1252`
    /// (all read as Windows-1252, which agrees with Latin-1 on every printable character).
    fn from_str(s: &str) -> Result<Encoding> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "windows-1252" | "cp1252" => {
                Ok(Encoding::Windows1252)
            }
            _ => Err(Error::invalid(
                "encoding",
                "unknown encoding: give utf-8 or latin1 (Windows-1252)",
            )),
        }
    }
}

/// Windows-1252 bytes 0x80–0x9F; the five bytes it leaves undefined map to the C1 control
/// of the same number, as in the WHATWG encoding standard.
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

fn cp1252_char(b: u8) -> char {
    match b {
        0x80..=0x9F => CP1252_HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

/// A reader that hands on UTF-8: UTF-8 input as it is, Windows-1252 input transcoded a
/// block at a time.
pub(crate) struct Decoder<R> {
    inner: R,
    encoding: Encoding,
    raw: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
}

impl<R: Read> Decoder<R> {
    fn new(inner: R, encoding: Encoding) -> Self {
        Decoder {
            inner,
            encoding,
            raw: Vec::new(),
            out: Vec::new(),
            pos: 0,
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.encoding == Encoding::Utf8 {
            return self.inner.read(buf);
        }
        if self.pos == self.out.len() {
            self.raw.resize(1 << 16, 0);
            let n = self.inner.read(&mut self.raw)?;
            self.out.clear();
            self.pos = 0;
            for &b in &self.raw[..n] {
                if b.is_ascii() {
                    self.out.push(b);
                } else {
                    let mut utf8 = [0; 4];
                    let c = cp1252_char(b).encode_utf8(&mut utf8);
                    self.out.extend_from_slice(c.as_bytes());
                }
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// A UTF-8 byte-order mark read as Windows-1252, after transcoding ("ï»¿").
const UTF8_BOM_AS_CP1252: &[u8] = "\u{EF}\u{BB}\u{BF}".as_bytes();

/// Delimiters tried when none is given, most common first (a tie goes to the earlier).
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// A delimiter's name in messages: `comma`, `semicolon`, `tab`, `pipe`, or the
/// character quoted.
pub fn delimiter_name(d: u8) -> String {
    match d {
        b',' => "comma".to_string(),
        b';' => "semicolon".to_string(),
        b'\t' => "tab".to_string(),
        b'|' => "pipe".to_string(),
        d => format!("'{}'", char::from(d)),
    }
}

/// Parses a `--delimiter` value: one ASCII character, or `tab`, `\t`, `semicolon`,
/// `comma`, `pipe`.
///
/// # Errors
/// [`Error::InvalidInput`] naming `delimiter`.
pub fn parse_delimiter(s: &str) -> Result<u8> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        "comma" => Ok(b','),
        "semicolon" => Ok(b';'),
        "pipe" => Ok(b'|'),
        s if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" && s != "\r" => {
            Ok(s.as_bytes()[0])
        }
        _ => Err(Error::invalid(
            "delimiter",
            "give one character (such as ; or |) or tab",
        )),
    }
}

/// The delimiter a header line uses: the candidate found most often outside quotes
/// (a comma when none is).
fn sniff_delimiter(line: &[u8]) -> u8 {
    let mut count = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for &b in line {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted {
            if let Some(i) = DELIMITERS.iter().position(|&d| d == b) {
                count[i] += 1;
            }
        }
    }
    let best = (0..DELIMITERS.len())
        .max_by_key(|&i| (count[i], std::cmp::Reverse(i)))
        .unwrap_or(0);
    if count[best] == 0 {
        b','
    } else {
        DELIMITERS[best]
    }
}

/// A byte source ready for the CSV parser: UTF-8, past any byte-order mark.
pub(crate) type Source<R> = BufReader<Decoder<R>>;

/// Opens `inner` as text in `encoding` and decides the delimiter (`given`, or detected
/// from the header line).
///
/// # Errors
/// [`Error::Io`] (without a path: the caller adds it) for read errors;
/// [`Error::InvalidInput`] naming `input` for UTF-16 text, or a UTF-8 byte-order mark read
/// as Windows-1252.
pub(crate) fn open<R: Read>(
    inner: R,
    encoding: Encoding,
    given: Option<u8>,
) -> Result<(Source<R>, u8)> {
    let mut src = BufReader::with_capacity(1 << 20, Decoder::new(inner, encoding));
    let io_err = |e| Error::io("", e);
    let head = src.fill_buf().map_err(io_err)?;
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        return Err(Error::invalid(
            "input",
            "the file is UTF-16 text: save it as UTF-8 (in Excel: CSV UTF-8) and read that",
        ));
    }
    if head.starts_with(UTF8_BOM_AS_CP1252) {
        return Err(Error::invalid(
            "input",
            "the file starts with a UTF-8 byte-order mark: it is UTF-8, read it without \
             --encoding latin1",
        ));
    }
    if head.starts_with(UTF8_BOM) {
        src.consume(UTF8_BOM.len());
    }
    let delimiter = match given {
        Some(d) => d,
        None => {
            let head = src.fill_buf().map_err(io_err)?;
            let line = head.split(|&b| b == b'\n').next().unwrap_or(head);
            sniff_delimiter(line)
        }
    };
    Ok((src, delimiter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], encoding: Encoding) -> String {
        let mut s = String::new();
        Decoder::new(bytes, encoding)
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn windows_1252_decodes_latin1_and_the_high_block() {
        assert_eq!(
            decode(b"Jos\xE9 M\xFCller \x80 \x93q\x94", Encoding::Windows1252),
            "José Müller € \u{201C}q\u{201D}"
        );
        // Latin-1 agrees with Windows-1252 on 0xA0-0xFF.
        let all: Vec<u8> = (0xA0..=0xFF).collect();
        let s = decode(&all, Encoding::Windows1252);
        assert!(s.chars().map(u32::from).eq(0xA0..=0xFF));
        assert_eq!(decode("é".as_bytes(), Encoding::Utf8), "é");
    }

    #[test]
    fn delimiters_are_sniffed_outside_quotes() {
        assert_eq!(sniff_delimiter(b"a,b,c"), b',');
        assert_eq!(sniff_delimiter(b"mrn;first;last"), b';');
        assert_eq!(sniff_delimiter(b"mrn\tfirst\tlast"), b'\t');
        assert_eq!(sniff_delimiter(b"a|b|c"), b'|');
        assert_eq!(sniff_delimiter(b"\"a,b\";c;d"), b';');
        assert_eq!(sniff_delimiter(b"single"), b',');
        assert_eq!(parse_delimiter("tab").unwrap(), b'\t');
        assert_eq!(parse_delimiter(";").unwrap(), b';');
        assert!(parse_delimiter(";;").is_err());
        assert!(parse_delimiter("\"").is_err());
    }

    #[test]
    fn encodings_parse() {
        assert_eq!("UTF8".parse::<Encoding>().unwrap(), Encoding::Utf8);
        assert_eq!("latin1".parse::<Encoding>().unwrap(), Encoding::Windows1252);
        assert_eq!(
            "Windows_1252".parse::<Encoding>().unwrap(),
            Encoding::Windows1252
        );
        assert!("ebcdic".parse::<Encoding>().is_err());
    }
}
