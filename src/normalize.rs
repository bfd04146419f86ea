//! Canonical forms: case folding, accent stripping, name suffixes, phone digits,
//! identifiers, postcodes, address abbreviations, and placeholder detection.
//!
//! Every function here is pure and infallible: an unusable value normalises to `None`.

use serde::{Deserialize, Serialize};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use crate::record::PartialDate;

/// Generational suffixes kept apart from the name they follow.
pub(crate) const SUFFIXES: &[&str] = &["jr", "sr", "ii", "iii", "iv", "v", "2nd", "3rd"];
/// Honorifics dropped from names.
const TITLES: &[&str] = &["mr", "mrs", "ms", "miss", "dr", "prof", "rev"];

/// Folds text to lowercase ASCII: accents stripped (José → jose), ligatures expanded,
/// everything that is not a letter or digit becomes a space, runs of spaces collapse.
/// Apostrophes vanish without a space (O'Brien → obrien).
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.nfkd() {
        if is_combining_mark(c) || c == '\'' || c == '’' || c == '`' {
            continue;
        }
        let c = match c {
            'ß' => {
                push_word(&mut out, &mut pending_space, "ss");
                continue;
            }
            'æ' | 'Æ' => {
                push_word(&mut out, &mut pending_space, "ae");
                continue;
            }
            'ø' | 'Ø' => 'o',
            'đ' | 'Đ' => 'd',
            'ł' | 'Ł' => 'l',
            c => c,
        };
        if c.is_ascii_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c.to_ascii_lowercase());
        } else {
            // Non-ASCII letters without a decomposition (e.g. CJK) are dropped: names in
            // scripts we cannot fold are compared on what remains.
            pending_space = true;
        }
    }
    out
}

fn push_word(out: &mut String, pending_space: &mut bool, w: &str) {
    if *pending_space && !out.is_empty() {
        out.push(' ');
    }
    *pending_space = false;
    out.push_str(w);
}

/// A normalised personal name: folded words, with any generational suffix split off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormName {
    /// Folded words separated by single spaces (hyphens become spaces).
    pub text: String,
    /// A generational suffix found at the end (`jr`, `iii`, …).
    pub suffix: Option<&'static str>,
}

/// Normalises a name: folds it, drops titles, splits off a trailing suffix.
/// Returns `None` when nothing is left.
pub fn name(s: &str) -> Option<NormName> {
    let folded = fold(s);
    let mut words: Vec<&str> = folded.split(' ').filter(|w| !w.is_empty()).collect();
    while words.len() > 1 && TITLES.contains(&words[0]) {
        words.remove(0);
    }
    let mut suffix = None;
    if words.len() > 1 {
        if let Some(found) = SUFFIXES.iter().find(|s| **s == words[words.len() - 1]) {
            suffix = Some(*found);
            words.pop();
        }
    }
    if words.is_empty() {
        return None;
    }
    Some(NormName {
        text: words.join(" "),
        suffix,
    })
}

/// Only the ASCII digits of `s`.
pub fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Canonical phone: its digits, a leading North American `1` trunk prefix dropped from
/// 11-digit numbers, at most the last 10 digits kept. Fewer than 7 digits → `None`
/// (malformed: not comparable).
pub fn phone(s: &str) -> Option<String> {
    let mut d = digits(s);
    if d.len() == 11 && d.starts_with('1') {
        d.remove(0);
    }
    if d.len() < 7 {
        return None;
    }
    if d.len() > 10 {
        d = d[d.len() - 10..].to_string();
    }
    Some(d)
}

/// Canonical identifier value: uppercase ASCII letters and digits only.
pub fn identifier(s: &str) -> Option<String> {
    let v: String = fold(s)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    (!v.is_empty()).then(|| v.to_ascii_uppercase())
}

/// Canonical postcode: uppercase alphanumerics; a US ZIP+4 is cut to its five digits.
pub fn postcode(s: &str) -> Option<String> {
    let v = identifier(s)?;
    if v.len() == 9 && v.bytes().all(|b| b.is_ascii_digit()) && s.contains('-') {
        return Some(v[..5].to_string());
    }
    Some(v)
}

/// Canonical email: trimmed and lowercased; `None` without an `@` in the middle.
pub fn email(s: &str) -> Option<String> {
    let e = s.trim().to_lowercase();
    match e.find('@') {
        Some(i) if i > 0 && i + 1 < e.len() => Some(e),
        _ => None,
    }
}

/// Canonical street line: folded, common words abbreviated the USPS way
/// (street → st, avenue → ave, north → n, apartment → apt, …).
pub fn address_line(s: &str) -> Option<String> {
    let folded = fold(s);
    let words: Vec<&str> = folded
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| match w {
            "street" => "st",
            "avenue" | "av" => "ave",
            "road" => "rd",
            "drive" => "dr",
            "lane" => "ln",
            "boulevard" => "blvd",
            "court" => "ct",
            "place" => "pl",
            "terrace" => "ter",
            "circle" => "cir",
            "highway" => "hwy",
            "parkway" => "pkwy",
            "square" => "sq",
            "north" => "n",
            "south" => "s",
            "east" => "e",
            "west" => "w",
            "apartment" | "unit" | "suite" | "ste" => "apt",
            w => w,
        })
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Values that carry no identity: registration placeholders. Configuration, serialised
/// inside the model so each site can extend it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placeholders {
    /// Folded given names that mean "not known" (e.g. `baby boy`, `unknown`).
    pub given_names: Vec<String>,
    /// Folded family names that mean "not known" (e.g. `unknown`, `doe`).
    pub family_names: Vec<String>,
    /// Birth dates that mean "not known" (ISO form, e.g. `1900-01-01`).
    pub birth_dates: Vec<String>,
    /// Canonical identifier values that mean "not known" (e.g. `123456789`).
    pub identifiers: Vec<String>,
    /// Canonical phone numbers that mean "not known" (e.g. `0000000000`).
    pub phones: Vec<String>,
}

impl Default for Placeholders {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        Placeholders {
            given_names: v(&[
                "baby",
                "baby boy",
                "baby girl",
                "babyboy",
                "babygirl",
                "boy",
                "girl",
                "infant",
                "newborn",
                "unknown",
                "unk",
                "trauma",
                "patient",
                "test",
                "twin a",
                "twin b",
                "male",
                "female",
                "nn",
                "fnu",
            ]),
            family_names: v(&["unknown", "unk", "doe", "trauma", "patient", "test", "lnu"]),
            birth_dates: v(&["1900-01-01", "1901-01-01", "1800-01-01", "1970-01-01"]),
            identifiers: v(&[
                "000000000",
                "111111111",
                "123456789",
                "999999999",
                "888888888",
                "987654321",
            ]),
            phones: v(&[
                "0000000000",
                "1111111111",
                "9999999999",
                "1234567890",
                "5555555555",
            ]),
        }
    }
}

impl Placeholders {
    /// Whether a (folded) given name is a placeholder on its own (`baby boy`, `unknown`).
    /// `john`/`jane` count only beside a placeholder family name
    /// (see [`Placeholders::is_placeholder_name`]).
    pub fn is_placeholder_given(&self, given: &str) -> bool {
        given.starts_with("baby ") || self.given_names.iter().any(|p| p == given)
    }

    /// Whether a (folded) family name is a placeholder.
    pub fn is_placeholder_family(&self, family: &str) -> bool {
        self.family_names.iter().any(|p| p == family)
    }

    /// Placeholder status of a whole name: `(given is placeholder, family is placeholder)`.
    /// "John Doe" and "Jane Doe" are placeholders as a pair.
    pub fn is_placeholder_name(&self, given: Option<&str>, family: Option<&str>) -> (bool, bool) {
        let fam = family.is_some_and(|f| self.is_placeholder_family(f));
        let giv = match given {
            Some("john") | Some("jane") => fam,
            Some(g) => self.is_placeholder_given(g),
            None => false,
        };
        (giv, fam)
    }

    /// Whether a birth date is a placeholder.
    pub fn is_placeholder_date(&self, d: &PartialDate) -> bool {
        let s = d.to_string();
        self.birth_dates.contains(&s)
    }

    /// Whether a canonical identifier is a placeholder (also any value of one repeated digit).
    pub fn is_placeholder_identifier(&self, id: &str) -> bool {
        let b = id.as_bytes();
        (b.len() > 1 && b.iter().all(|c| *c == b[0])) || self.identifiers.iter().any(|p| p == id)
    }

    /// Whether a canonical phone is a placeholder (also any value of one repeated digit).
    pub fn is_placeholder_phone(&self, p: &str) -> bool {
        let b = p.as_bytes();
        (b.len() > 1 && b.iter().all(|c| *c == b[0])) || self.phones.iter().any(|x| x == p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding() {
        assert_eq!(fold("José"), "jose");
        assert_eq!(fold("  MARÍA  del   Carmen "), "maria del carmen");
        assert_eq!(fold("O'Brien"), "obrien");
        assert_eq!(fold("Smith-Jones"), "smith jones");
        assert_eq!(fold("Müller"), "muller");
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("Łukasz"), "lukasz");
        assert_eq!(fold("ǅ"), "dz");
    }

    #[test]
    fn names_split_suffix_and_titles() {
        let n = name("Dr. Martin Luther King, Jr.").unwrap();
        assert_eq!(n.text, "martin luther king");
        assert_eq!(n.suffix, Some("jr"));
        assert_eq!(name("Henry VIII").unwrap().text, "henry viii");
        assert_eq!(name("John III").unwrap().suffix, Some("iii"));
        // a lone word is never taken for a suffix
        assert_eq!(name("V").unwrap().text, "v");
        assert_eq!(name(" -- "), None);
    }

    #[test]
    fn phones_and_identifiers() {
        assert_eq!(phone("(555) 123-4567").as_deref(), Some("5551234567"));
        assert_eq!(phone("+1 555.123.4567").as_deref(), Some("5551234567"));
        assert_eq!(phone("123-45"), None);
        assert_eq!(identifier("123-45-6789").as_deref(), Some("123456789"));
        assert_eq!(identifier(" ab 12 ").as_deref(), Some("AB12"));
        assert_eq!(postcode("02139-4307").as_deref(), Some("02139"));
        assert_eq!(postcode("sw1a 1aa").as_deref(), Some("SW1A1AA"));
        assert_eq!(
            email(" Ann@Example.ORG ").as_deref(),
            Some("ann@example.org")
        );
        assert_eq!(email("nobody"), None);
    }

    #[test]
    fn addresses_abbreviate() {
        assert_eq!(
            address_line("12 North Main Street, Apt. 4").unwrap(),
            "12 n main st apt 4"
        );
        assert_eq!(address_line("12 N. Main St").unwrap(), "12 n main st");
    }

    #[test]
    fn placeholders() {
        let p = Placeholders::default();
        assert_eq!(
            p.is_placeholder_name(Some("john"), Some("doe")),
            (true, true)
        );
        assert_eq!(
            p.is_placeholder_name(Some("john"), Some("smith")),
            (false, false)
        );
        assert_eq!(
            p.is_placeholder_name(Some("baby girl"), Some("smith")),
            (true, false)
        );
        assert!(p.is_placeholder_date(&PartialDate::full(1900, 1, 1).unwrap()));
        assert!(p.is_placeholder_identifier("123456789"));
        assert!(p.is_placeholder_identifier("000000000"));
        assert!(!p.is_placeholder_identifier("123456780"));
        assert!(p.is_placeholder_phone("5555555555"));
    }
}
