//! The corruptions a record can suffer, their tally, and the string and date edits that
//! perform them.
//!
//! Each edit works in place on a reused buffer; none allocates once the buffers are warm.

use serde::Serialize;

use super::names::fold_accent;
use super::rng::{below_u32, index, Rng};

macro_rules! corruptions {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal ),* $(,)?) => {
        /// A kind of corruption (or recording variation) applied to generated records.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Corruption {
            $( $(#[$doc])* $variant, )*
        }

        impl Corruption {
            /// Every kind, in tally order.
            pub const ALL: &'static [Corruption] = &[$(Corruption::$variant),*];

            /// The snake_case name used in the summary, the manifest and the README.
            pub fn name(self) -> &'static str {
                match self {
                    $(Corruption::$variant => $name,)*
                }
            }
        }
    };
}

corruptions! {
    /// A letter replaced by a random letter.
    TypoSubstitution = "typo_substitution",
    /// A letter inserted.
    TypoInsertion = "typo_insertion",
    /// A letter deleted.
    TypoDeletion = "typo_deletion",
    /// Two adjacent letters swapped.
    TypoTransposition = "typo_transposition",
    /// A letter replaced by a neighbouring key on a QWERTY keyboard.
    TypoKeyboard = "typo_keyboard",
    /// A sound-alike respelling (ph↔f, ck↔k, doubled letters, ei↔ie, …).
    Phonetic = "phonetic",
    /// The given name recorded as a nickname.
    Nickname = "nickname",
    /// The middle name recorded as its initial.
    MiddleInitial = "middle_initial",
    /// A record from before a marriage: the maiden name as the family name.
    MaidenName = "maiden_name",
    /// A record after a marriage stating the maiden name as previous family name.
    PreviousNameRecorded = "previous_name_recorded",
    /// Given and family name swapped.
    NameSwap = "name_swap",
    /// A record from before the household moved: old address (and maybe old phone).
    MovedAddress = "moved_address",
    /// Birth day and month swapped.
    DateDayMonthSwap = "date_day_month_swap",
    /// One digit of the birth date changed.
    DateDigitSlip = "date_digit_slip",
    /// Birth date known only to the year or the month.
    PartialDate = "partial_date",
    /// Given name missing.
    MissingGiven = "missing_given",
    /// Middle name missing though the person has one.
    MissingMiddle = "missing_middle",
    /// Family name missing.
    MissingFamily = "missing_family",
    /// Birth date missing.
    MissingBirthDate = "missing_birth_date",
    /// Sex missing (empty or `U`).
    MissingSex = "missing_sex",
    /// The whole address missing.
    MissingAddress = "missing_address",
    /// Only the postal code missing.
    MissingPostalCode = "missing_postal_code",
    /// Phone missing.
    MissingPhone = "missing_phone",
    /// Email missing though the person has one.
    MissingEmail = "missing_email",
    /// National id missing though the person has one.
    MissingNationalId = "missing_national_id",
    /// A newborn recorded as "Baby Boy"/"Baby Girl".
    BabyName = "baby_name",
    /// Names replaced by a placeholder ("Unknown", "John Doe", …).
    PlaceholderName = "placeholder_name",
    /// Birth date replaced by 1900-01-01.
    PlaceholderDate = "placeholder_date",
    /// National id replaced by a placeholder (123-45-6789, 999-99-9999, 000-00-0000).
    PlaceholderNationalId = "placeholder_national_id",
    /// Names and address in upper or lower case.
    CaseNoise = "case_noise",
    /// Leading, trailing or doubled spaces.
    WhitespaceNoise = "whitespace_noise",
    /// Accents dropped (José → Jose).
    AccentDrop = "accent_drop",
    /// Apostrophe or hyphen dropped or spaced, or one half of a double-barrelled name kept.
    PunctuationNoise = "punctuation_noise",
    /// Street suffix spelled out or dotted (St → Street, St.).
    AddressFormatNoise = "address_format_noise",
    /// National id written with dashes or spaces.
    NationalIdFormatNoise = "national_id_format_noise",
    /// Phone written as (555) 123-4567, 555.123.4567, +1 …
    PhoneFormatNoise = "phone_format_noise",
    /// Multiple-birth order recorded for a twin or triplet.
    BirthOrderRecorded = "birth_order_recorded",
    /// The given name replaced by another name (a wrong person's, a mis-keyed field).
    GivenReplaced = "given_replaced",
    /// The family name replaced by another surname.
    FamilyReplaced = "family_replaced",
    /// The birth date replaced by another date (re-keyed from another document).
    BirthDateReplaced = "birth_date_replaced",
    /// One digit of the national id changed.
    NationalIdDigitSlip = "national_id_digit_slip",
    /// The national id replaced by another.
    NationalIdReplaced = "national_id_replaced",
    /// The street line replaced by another address's.
    StreetReplaced = "street_replaced",
    /// The postal code replaced by another.
    PostalCodeReplaced = "postal_code_replaced",
}

/// How often each corruption was possible and how often it was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Opportunities: records (or fields) where the corruption could apply.
    pub(crate) eligible: [u64; N_KINDS],
    /// Applications.
    pub(crate) applied: [u64; N_KINDS],
}

/// Number of corruption kinds.
pub(crate) const N_KINDS: usize = Corruption::ALL.len();

impl Default for Tally {
    fn default() -> Self {
        Tally {
            eligible: [0; N_KINDS],
            applied: [0; N_KINDS],
        }
    }
}

impl Tally {
    /// Counts one opportunity.
    pub(crate) fn eligible(&mut self, c: Corruption) {
        self.eligible[c as usize] += 1;
    }

    /// Counts one application.
    pub(crate) fn applied(&mut self, c: Corruption) {
        self.applied[c as usize] += 1;
    }
}

/// Applied and eligible counts of one corruption kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CorruptionCount {
    /// Times applied.
    pub applied: u64,
    /// Times it could have been applied (records or fields eligible).
    pub eligible: u64,
}

/// The kinds of typo, in the order they are drawn.
pub(crate) const TYPOS: [Corruption; 5] = [
    Corruption::TypoSubstitution,
    Corruption::TypoInsertion,
    Corruption::TypoDeletion,
    Corruption::TypoTransposition,
    Corruption::TypoKeyboard,
];

/// Reused buffers for in-place edits.
#[derive(Default)]
pub(crate) struct Scratch {
    chars: Vec<char>,
    candidates: Vec<(usize, u8)>,
    text: String,
}

/// Applies one random typo to `s`; returns its kind, or `None` when `s` has too few letters.
pub(crate) fn typo(rng: &mut Rng, s: &mut String, scratch: &mut Scratch) -> Option<Corruption> {
    let chars = &mut scratch.chars;
    chars.clear();
    chars.extend(s.chars());
    let letters: usize = chars.iter().filter(|c| c.is_alphabetic()).count();
    if letters < 2 {
        return None;
    }
    let kind = TYPOS[index(rng, TYPOS.len())];
    let upper = chars
        .iter()
        .filter(|c| c.is_alphabetic())
        .all(|c| c.is_uppercase());
    // The nth letter's position in `chars`.
    let nth_letter = |chars: &[char], n: usize| {
        chars
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_alphabetic())
            .nth(n)
            .map(|(i, _)| i)
    };
    let random_letter = |rng: &mut Rng, like: char| {
        let c = char::from(b'a' + below_u32(rng, 26) as u8);
        if like.is_uppercase() || upper {
            c.to_ascii_uppercase()
        } else {
            c
        }
    };
    match kind {
        Corruption::TypoSubstitution | Corruption::TypoKeyboard => {
            let i = nth_letter(chars, index(rng, letters))?;
            let old = chars[i];
            let lower = fold_accent(old).to_ascii_lowercase();
            let new = if kind == Corruption::TypoKeyboard {
                let near = keyboard_neighbours(lower);
                if near.is_empty() {
                    return None;
                }
                let c = char::from(near[index(rng, near.len())]);
                if old.is_uppercase() {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            } else {
                let mut c = random_letter(rng, old);
                if c.to_ascii_lowercase() == lower {
                    c = char::from(if lower == 'z' { b'a' } else { lower as u8 + 1 });
                    if old.is_uppercase() {
                        c = c.to_ascii_uppercase();
                    }
                }
                c
            };
            chars[i] = new;
        }
        Corruption::TypoInsertion => {
            let i = 1 + index(rng, chars.len()); // never before the first letter
                                                 // Lower case unless the whole name is in capitals.
            let c = random_letter(rng, 'a');
            chars.insert(i.min(chars.len()), c);
        }
        Corruption::TypoDeletion => {
            let i = nth_letter(chars, index(rng, letters))?;
            chars.remove(i);
        }
        _ => {
            // Transposition: adjacent letters that differ.
            let n_pairs = chars.len().saturating_sub(1);
            let start = index(rng, n_pairs.max(1));
            let i = (0..n_pairs).map(|k| (start + k) % n_pairs).find(|&i| {
                chars[i].is_alphabetic()
                    && chars[i + 1].is_alphabetic()
                    && !chars[i].eq_ignore_ascii_case(&chars[i + 1])
            })?;
            let (a, b) = (chars[i], chars[i + 1]);
            // Keep the capital at the front of the word.
            if a.is_uppercase() && !b.is_uppercase() && (i == 0 || !chars[i - 1].is_alphabetic()) {
                chars[i] = b.to_uppercase().next().unwrap_or(b);
                chars[i + 1] = a.to_lowercase().next().unwrap_or(a);
            } else {
                chars.swap(i, i + 1);
            }
        }
    }
    s.clear();
    s.extend(chars.iter());
    Some(kind)
}

/// QWERTY neighbours of a lowercase letter.
fn keyboard_neighbours(c: char) -> &'static [u8] {
    match c {
        'q' => b"wa",
        'w' => b"qesa",
        'e' => b"wrds",
        'r' => b"etfd",
        't' => b"rygf",
        'y' => b"tuhg",
        'u' => b"yijh",
        'i' => b"uokj",
        'o' => b"iplk",
        'p' => b"ol",
        'a' => b"qwsz",
        's' => b"adwezx",
        'd' => b"sferxc",
        'f' => b"dgrtcv",
        'g' => b"fhtyvb",
        'h' => b"gjyubn",
        'j' => b"hkuinm",
        'k' => b"jliom",
        'l' => b"kop",
        'z' => b"asx",
        'x' => b"zcsd",
        'c' => b"xvdf",
        'v' => b"cbfg",
        'b' => b"vngh",
        'n' => b"bmhj",
        'm' => b"njk",
        _ => b"",
    }
}

/// Where a phonetic rule may match.
#[derive(Clone, Copy)]
enum At {
    Anywhere,
    NotStart,
    End,
    /// Before a, o, u or at the end (hard c/k).
    Hard,
}

/// Sound-alike respellings: (from, to, where). Both directions are listed.
const PHONETIC_RULES: &[(&str, &str, At)] = &[
    ("ph", "f", At::Anywhere),
    ("f", "ph", At::Anywhere),
    ("ck", "k", At::NotStart),
    ("k", "ck", At::End),
    ("c", "k", At::Hard),
    ("k", "c", At::Hard),
    ("y", "ie", At::End),
    ("ie", "y", At::End),
    ("ey", "y", At::End),
    ("ei", "ie", At::Anywhere),
    ("ie", "ei", At::NotStart),
    ("ith", "yth", At::Anywhere),
    ("yth", "ith", At::Anywhere),
    ("son", "sen", At::End),
    ("sen", "son", At::End),
    ("th", "t", At::NotStart),
    ("z", "s", At::NotStart),
    ("s", "z", At::NotStart),
    ("ou", "ow", At::Anywhere),
    ("ow", "ou", At::Anywhere),
    ("ae", "e", At::Anywhere),
    ("gh", "", At::NotStart),
    ("kn", "n", At::Anywhere),
];

/// Rule index marking "undouble the letter here" among candidates.
const UNDOUBLE: u8 = u8::MAX;
/// Rule index marking "double the letter here".
const DOUBLE: u8 = u8::MAX - 1;

/// Applies one sound-alike respelling; false when no rule fits `s`.
pub(crate) fn phonetic(rng: &mut Rng, s: &mut String, scratch: &mut Scratch) -> bool {
    let b = s.as_bytes();
    let cands = &mut scratch.candidates;
    cands.clear();
    let is_vowel = |c: u8| matches!(c.to_ascii_lowercase(), b'a' | b'e' | b'i' | b'o' | b'u');
    for i in 0..b.len() {
        for (r, &(from, _, at)) in PHONETIC_RULES.iter().enumerate() {
            let f = from.as_bytes();
            if i + f.len() > b.len() || !b[i..i + f.len()].eq_ignore_ascii_case(f) {
                continue;
            }
            let end = i + f.len();
            let word_start = i == 0 || !b[i - 1].is_ascii_alphabetic();
            let word_end = end == b.len() || !b[end].is_ascii_alphabetic();
            let ok = match at {
                At::Anywhere => true,
                At::NotStart => !word_start,
                At::End => word_end && !word_start,
                At::Hard => {
                    word_end
                        || matches!(
                            b[end].to_ascii_lowercase(),
                            b'a' | b'o' | b'u' | b'l' | b'r'
                        )
                }
            };
            if ok {
                cands.push((i, r as u8));
            }
        }
        let c = b[i].to_ascii_lowercase();
        if i > 0 && b"lnrtsmdp".contains(&c) {
            if i + 1 < b.len() && b[i + 1].eq_ignore_ascii_case(&b[i]) {
                cands.push((i, UNDOUBLE));
            } else if is_vowel(b[i - 1])
                && !b[i - 1].eq_ignore_ascii_case(&b[i])
                && (i + 1 == b.len() || is_vowel(b[i + 1]))
            {
                cands.push((i, DOUBLE));
            }
        }
    }
    if cands.is_empty() {
        return false;
    }
    let (i, r) = cands[index(rng, cands.len())];
    let out = &mut scratch.text;
    out.clear();
    out.push_str(&s[..i]);
    match r {
        UNDOUBLE => out.push_str(&s[i + 1..]),
        DOUBLE => {
            out.push_str(&s[i..=i]);
            out.push_str(&s[i..]);
        }
        _ => {
            let (from, to, _) = PHONETIC_RULES[r as usize];
            let first_upper = s.as_bytes()[i].is_ascii_uppercase();
            let all_upper = s
                .bytes()
                .filter(u8::is_ascii_alphabetic)
                .all(|c| c.is_ascii_uppercase());
            for (k, c) in to.chars().enumerate() {
                if all_upper || (k == 0 && first_upper) {
                    out.push(c.to_ascii_uppercase());
                } else {
                    out.push(c);
                }
            }
            out.push_str(&s[i + from.len()..]);
        }
    }
    std::mem::swap(s, out);
    true
}

/// Upper-cases `s` in place (reusing the scratch buffer).
pub(crate) fn to_upper(s: &mut String, scratch: &mut Scratch) {
    if s.is_ascii() {
        s.make_ascii_uppercase();
    } else {
        scratch.text.clear();
        scratch.text.extend(s.chars().flat_map(char::to_uppercase));
        std::mem::swap(s, &mut scratch.text);
    }
}

/// Lower-cases `s` in place.
pub(crate) fn to_lower(s: &mut String, scratch: &mut Scratch) {
    if s.is_ascii() {
        s.make_ascii_lowercase();
    } else {
        scratch.text.clear();
        scratch.text.extend(s.chars().flat_map(char::to_lowercase));
        std::mem::swap(s, &mut scratch.text);
    }
}

/// Adds leading/trailing spaces or doubles an inner space.
pub(crate) fn whitespace(rng: &mut Rng, s: &mut String, scratch: &mut Scratch) {
    let t = &mut scratch.text;
    t.clear();
    match below_u32(rng, 4) {
        0 => {
            t.push_str("  ");
            t.push_str(s);
            t.push(' ');
        }
        1 => {
            t.push_str(s);
            t.push(' ');
        }
        2 if s.contains(' ') => {
            t.push_str(&s.replacen(' ', "  ", 1));
        }
        _ => {
            t.push(' ');
            t.push_str(s);
        }
    }
    std::mem::swap(s, t);
}

/// Drops accents in place; false when there were none.
pub(crate) fn drop_accents(s: &mut String, scratch: &mut Scratch) -> bool {
    if s.is_ascii() {
        return false;
    }
    scratch.text.clear();
    scratch.text.extend(s.chars().map(fold_accent));
    std::mem::swap(s, &mut scratch.text);
    true
}

/// Mangles an apostrophe or hyphen: dropped, spaced, or (hyphen) one half kept.
/// False when `s` has neither.
pub(crate) fn punctuation(rng: &mut Rng, s: &mut String, scratch: &mut Scratch) -> bool {
    let Some(pos) = s.find(['\'', '-']) else {
        return false;
    };
    let t = &mut scratch.text;
    t.clear();
    let (left, right) = (&s[..pos], &s[pos + 1..]);
    match below_u32(rng, if s.as_bytes()[pos] == b'-' { 4 } else { 3 }) {
        0 => {
            t.push_str(left);
            t.push(' ');
            t.push_str(right);
        }
        1 => {
            t.push_str(left);
            t.push_str(right);
        }
        2 if s.as_bytes()[pos] == b'\'' => {
            // O'Brien → Obrien
            t.push_str(left);
            t.extend(right.chars().flat_map(char::to_lowercase));
        }
        2 => t.push_str(left),
        _ => t.push_str(right),
    }
    std::mem::swap(s, t);
    true
}

/// Swaps day and month when both are ≤ 12 and differ; false otherwise.
pub(crate) fn swap_day_month(date: &mut (u16, u8, u8)) -> bool {
    let (y, m, d) = *date;
    if d > 12 || d == m {
        return false;
    }
    *date = (y, d, m);
    true
}

/// Changes one digit of the year's last two, the month or the day, keeping the date valid
/// and not after `max` (year, month, day); false when no try succeeded.
pub(crate) fn digit_slip(rng: &mut Rng, date: &mut (u16, u8, u8), max: (u16, u8, u8)) -> bool {
    for _ in 0..8 {
        let (mut y, mut m, mut d) = *date;
        let digit = below_u32(rng, 10);
        match below_u32(rng, 6) {
            0 => y = y - y % 10 + digit as u16,
            1 => y = y - (y / 10 % 10) * 10 + digit as u16 * 10,
            2 => m = (m % 10) + digit as u8 * 10,
            3 => m = m - m % 10 + digit as u8,
            4 => d = (d % 10) + digit as u8 * 10,
            _ => d = d - d % 10 + digit as u8,
        }
        let valid = (1..=12).contains(&m)
            && d >= 1
            && d <= crate::record::days_in_month(y, m)
            && (y, m, d) <= max
            && (y, m, d) != *date;
        if valid {
            *date = (y, m, d);
            return true;
        }
    }
    false
}

/// Writes a 10-digit phone in the style `style` (0 plain digits; 1..=6 noisy formats).
pub(crate) fn write_phone(out: &mut String, phone: u64, style: u32) {
    use std::fmt::Write as _;
    let (a, e, l) = (phone / 10_000_000, phone / 10_000 % 1000, phone % 10_000);
    // Writing to a String cannot fail.
    let _ = match style {
        1 => write!(out, "({a}) {e}-{l:04}"),
        2 => write!(out, "{a}.{e}.{l:04}"),
        3 => write!(out, "+1 {a} {e} {l:04}"),
        4 => write!(out, "{a}-{e}-{l:04}"),
        5 => write!(out, "1-{a}-{e}-{l:04}"),
        6 => write!(out, "+1{a}{e}{l:04}"),
        _ => write!(out, "{phone:010}"),
    };
}

/// Number of noisy phone styles for [`write_phone`].
pub(crate) const PHONE_STYLES: u32 = 6;

/// Writes a 9-digit national id: plain (style 0), with dashes (1) or spaces (2).
pub(crate) fn write_ssn(out: &mut String, ssn: u32, style: u32) {
    use std::fmt::Write as _;
    let (a, g, s) = (ssn / 1_000_000, ssn / 10_000 % 100, ssn % 10_000);
    // Writing to a String cannot fail.
    let _ = match style {
        1 => write!(out, "{a:03}-{g:02}-{s:04}"),
        2 => write!(out, "{a:03} {g:02} {s:04}"),
        _ => write!(out, "{ssn:09}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::rng::seeded;

    #[test]
    fn names_are_unique_and_ordered() {
        let mut names: Vec<&str> = Corruption::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(Corruption::ALL[3] as usize, 3);
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), N_KINDS);
    }

    #[test]
    fn typos_change_the_name_a_little() {
        let mut rng = seeded(1, 0);
        let mut sc = Scratch::default();
        let mut seen = [false; 5];
        for _ in 0..500 {
            let mut s = String::from("Johnson");
            let k = typo(&mut rng, &mut s, &mut sc).unwrap();
            seen[TYPOS.iter().position(|t| *t == k).unwrap()] = true;
            assert_ne!(s, "Johnson", "{k:?}");
            // Case-blind: a transposition at the front keeps the capital first (Ojhnson).
            let dist = strsim::damerau_levenshtein(&s.to_lowercase(), "johnson");
            assert_eq!(dist, 1, "{s} {k:?}");
        }
        assert!(seen.iter().all(|s| *s));
        let mut one = String::from("A");
        assert!(typo(&mut rng, &mut one, &mut sc).is_none());
        let mut accented = String::from("José");
        typo(&mut rng, &mut accented, &mut sc).unwrap();
    }

    #[test]
    fn phonetic_respellings() {
        let mut rng = seeded(2, 0);
        let mut sc = Scratch::default();
        let mut out = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let mut s = String::from("Phillip");
            assert!(phonetic(&mut rng, &mut s, &mut sc));
            out.insert(s);
        }
        assert!(out.contains("Fillip"), "{out:?}");
        assert!(out.contains("Philip"), "{out:?}");
        let mut s = String::from("Kathy");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            s.clear();
            s.push_str("Kathy");
            phonetic(&mut rng, &mut s, &mut sc);
            seen.insert(s.clone());
        }
        assert!(
            seen.contains("Kathie") && seen.contains("Cathy"),
            "{seen:?}"
        );
        let mut none = String::from("Bo");
        assert!(!phonetic(&mut rng, &mut none, &mut sc));
    }

    #[test]
    fn punctuation_and_accents() {
        let mut rng = seeded(3, 0);
        let mut sc = Scratch::default();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let mut s = String::from("O'Brien");
            assert!(punctuation(&mut rng, &mut s, &mut sc));
            seen.insert(s);
        }
        let want = ["O Brien", "OBrien", "Obrien"].map(String::from);
        assert_eq!(seen, want.into_iter().collect());
        let mut s = String::from("Hernández-López");
        assert!(drop_accents(&mut s, &mut sc));
        assert_eq!(s, "Hernandez-Lopez");
        assert!(!punctuation(&mut rng, &mut String::from("Smith"), &mut sc));
    }

    #[test]
    fn dates() {
        let mut d = (1980, 3, 7);
        assert!(swap_day_month(&mut d));
        assert_eq!(d, (1980, 7, 3));
        let mut d = (1980, 3, 17);
        assert!(!swap_day_month(&mut d));
        let mut rng = seeded(4, 0);
        for _ in 0..1000 {
            let mut d = (1999, 12, 31);
            if digit_slip(&mut rng, &mut d, (2025, 7, 1)) {
                assert_ne!(d, (1999, 12, 31));
                assert!(crate::record::PartialDate::full(d.0, d.1, d.2).is_ok());
                assert!(d <= (2025, 7, 1));
            }
        }
    }

    #[test]
    fn phone_and_ssn_formats() {
        let mut s = String::new();
        write_phone(&mut s, 2_975_550_123, 1);
        assert_eq!(s, "(297) 555-0123");
        s.clear();
        write_phone(&mut s, 2_975_550_123, 0);
        assert_eq!(s, "2975550123");
        s.clear();
        write_ssn(&mut s, 12_345_678, 1);
        assert_eq!(s, "012-34-5678");
        s.clear();
        write_ssn(&mut s, 12_345_678, 0);
        assert_eq!(s, "012345678");
    }
}
