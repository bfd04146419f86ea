//! Per-record derived keys, computed once per record and never per compared pair:
//! canonical values, phonetic codes, nickname groups, placeholder filtering.
//!
//! A [`Prepared`] record is what comparators, scoring and blocking work on. Placeholder
//! values (see [`Placeholders`]) are dropped here, so they compare as missing everywhere.

use crate::compare::nickname::NicknameTable;
use crate::compare::phonetic;
use crate::normalize::{self, Placeholders};
use crate::record::{PartialDate, Record, Sex, NATIONAL_ID_SYSTEM};

/// A phonetic code packed into a `u64` (first eight ASCII bytes), so equality is one compare.
pub type Code = u64;

/// Packs up to eight ASCII bytes of a code; the empty code packs to 0.
pub fn pack(code: &str) -> Code {
    let mut buf = [0u8; 8];
    for (i, b) in code.bytes().take(8).enumerate() {
        buf[i] = b;
    }
    u64::from_le_bytes(buf)
}

/// Derived keys of one name.
#[derive(Debug, Clone, PartialEq)]
pub struct NameKeys {
    /// Folded words, single spaces.
    pub text: Box<str>,
    /// Soundex of the letters.
    pub soundex: Code,
    /// Double Metaphone primary code.
    pub metaphone: Code,
    /// Double Metaphone alternate code.
    pub metaphone_alt: Code,
    /// NYSIIS code.
    pub nysiis: Code,
    /// Nickname groups (given names only; sorted).
    pub nick: Box<[u32]>,
    /// Relative frequency of this value in the population, filled by the model
    /// (0 when the model has no table for the field).
    pub tf: f32,
}

impl NameKeys {
    fn new(text: String, with_nicknames: bool) -> Self {
        let letters: String = text.chars().filter(|c| *c != ' ').collect();
        let (dm1, dm2) = phonetic::double_metaphone(&letters);
        let nick = if with_nicknames {
            NicknameTable::shipped().groups(&text).into()
        } else {
            Box::default()
        };
        NameKeys {
            soundex: pack(&phonetic::soundex(&letters)),
            metaphone: pack(&dm1),
            metaphone_alt: pack(&dm2),
            nysiis: pack(&phonetic::nysiis(&letters)),
            nick,
            tf: 0.0,
            text: text.into_boxed_str(),
        }
    }

    /// Whether any phonetic code agrees (Soundex, either Double Metaphone code, NYSIIS).
    pub fn phonetic_agrees(&self, other: &NameKeys) -> bool {
        (self.soundex != 0 && self.soundex == other.soundex)
            || (self.nysiis != 0 && self.nysiis == other.nysiis)
            || (self.metaphone != 0
                && (self.metaphone == other.metaphone || self.metaphone == other.metaphone_alt))
            || (other.metaphone != 0 && other.metaphone == self.metaphone_alt)
    }
}

/// A record with every derived key computed: what comparison and blocking use.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prepared {
    /// Given name, unless missing or a placeholder.
    pub given: Option<NameKeys>,
    /// Middle name (folded).
    pub middle: Option<Box<str>>,
    /// Family name, unless missing or a placeholder.
    pub family: Option<NameKeys>,
    /// Earlier family names.
    pub previous: Vec<NameKeys>,
    /// Generational suffix (`jr`, `iii`, …) split from either name.
    pub suffix: Option<&'static str>,
    /// Birth date unless a placeholder.
    pub birth: Option<PartialDate>,
    /// Administrative sex; `Unknown` compares as missing.
    pub sex: Sex,
    /// Canonical national id unless a placeholder.
    pub national_id: Option<Box<str>>,
    /// Canonical phone numbers (placeholders removed).
    pub phones: Vec<Box<str>>,
    /// Canonical email.
    pub email: Option<Box<str>>,
    /// Canonical first street line.
    pub street: Option<Box<str>>,
    /// Folded city.
    pub city: Option<Box<str>>,
    /// Canonical postcode.
    pub postcode: Option<Box<str>>,
    /// Relative frequency of the postcode, filled by the model (0 = no table).
    pub postcode_tf: f32,
    /// Multiple-birth order.
    pub multiple_birth_order: Option<u8>,
}

impl Prepared {
    /// Normalises a record and derives its keys; placeholders become missing.
    /// Term frequencies stay 0 until a model fills them.
    pub fn new(r: &Record, placeholders: &Placeholders) -> Prepared {
        let given = r.given_name.as_deref().and_then(normalize::name);
        let family = r.family_name.as_deref().and_then(normalize::name);
        let (g_ph, f_ph) = placeholders.is_placeholder_name(
            given.as_ref().map(|n| n.text.as_str()),
            family.as_ref().map(|n| n.text.as_str()),
        );
        let suffix = family
            .as_ref()
            .and_then(|n| n.suffix)
            .or(given.as_ref().and_then(|n| n.suffix));
        let given = given.filter(|_| !g_ph).map(|n| NameKeys::new(n.text, true));
        let family = family
            .filter(|_| !f_ph)
            .map(|n| NameKeys::new(n.text, false));
        let previous = r
            .previous_family_names
            .iter()
            .filter_map(|s| normalize::name(s))
            .filter(|n| !placeholders.is_placeholder_family(&n.text))
            .map(|n| NameKeys::new(n.text, false))
            .collect();
        let national_id = r
            .identifiers
            .iter()
            .filter(|i| i.system == NATIONAL_ID_SYSTEM)
            .filter_map(|i| normalize::identifier(&i.value))
            .find(|v| !placeholders.is_placeholder_identifier(v))
            .map(String::into_boxed_str);
        let mut phones: Vec<Box<str>> = r
            .phones
            .iter()
            .filter_map(|p| normalize::phone(p))
            .filter(|p| !placeholders.is_placeholder_phone(p))
            .map(String::into_boxed_str)
            .collect();
        phones.sort();
        phones.dedup();
        Prepared {
            given,
            middle: r
                .middle_name
                .as_deref()
                .and_then(normalize::name)
                .map(|n| n.text.into_boxed_str()),
            family,
            previous,
            suffix,
            birth: r
                .birth_date
                .filter(|d| !placeholders.is_placeholder_date(d)),
            sex: r.sex,
            national_id,
            phones,
            email: r
                .email
                .as_deref()
                .and_then(normalize::email)
                .map(String::into_boxed_str),
            street: r
                .address
                .lines
                .first()
                .and_then(|l| normalize::address_line(l))
                .map(String::into_boxed_str),
            city: r
                .address
                .city
                .as_deref()
                .map(normalize::fold)
                .filter(|c| !c.is_empty())
                .map(String::into_boxed_str),
            postcode: r
                .address
                .postal_code
                .as_deref()
                .and_then(normalize::postcode)
                .map(String::into_boxed_str),
            postcode_tf: 0.0,
            multiple_birth_order: r.multiple_birth_order,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Address, Identifier};

    fn rec() -> Record {
        Record {
            source: "adt".into(),
            local_id: "1".into(),
            given_name: Some("Baby Boy".into()),
            family_name: Some("Núñez-García Jr".into()),
            birth_date: Some(PartialDate::full(1900, 1, 1).unwrap()),
            identifiers: vec![Identifier {
                system: NATIONAL_ID_SYSTEM.into(),
                value: "123-45-6789".into(),
            }],
            phones: vec!["(555) 201-7788".into(), "555.201.7788".into(), "12".into()],
            address: Address {
                lines: vec!["12 North Main Street".into()],
                postal_code: Some("02139-1234".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn placeholders_become_missing() {
        let p = Prepared::new(&rec(), &Placeholders::default());
        assert!(p.given.is_none(), "baby boy is a placeholder");
        assert!(p.birth.is_none(), "1900-01-01 is a placeholder");
        assert!(p.national_id.is_none(), "123-45-6789 is a placeholder");
        let fam = p.family.unwrap();
        assert_eq!(&*fam.text, "nunez garcia");
        assert_eq!(p.suffix, Some("jr"));
        assert_eq!(
            p.phones,
            vec![Box::from("5552017788")],
            "deduplicated, malformed dropped"
        );
        assert_eq!(p.street.as_deref(), Some("12 n main st"));
        assert_eq!(p.postcode.as_deref(), Some("02139"));
    }

    #[test]
    fn codes_are_computed_once_and_agree_phonetically() {
        let a = NameKeys::new("smith".into(), false);
        let b = NameKeys::new("smyth".into(), false);
        let c = NameKeys::new("jones".into(), false);
        assert!(a.phonetic_agrees(&b));
        assert!(!a.phonetic_agrees(&c));
        assert_eq!(pack(""), 0);
        assert_ne!(pack("S530"), pack("S531"));
    }
}
