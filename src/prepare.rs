//! Per-record derived keys, computed once per record and never per compared pair:
//! canonical values, phonetic codes, nickname groups, placeholder filtering.
//!
//! A [`Prepared`] record is what comparators, scoring and blocking work on. Placeholder
//! values (see [`Placeholders`]) are dropped here, so they compare as missing everywhere.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameKeys {
    /// Folded words, single spaces. Shared: records prepared through one [`NameCache`]
    /// hold the same allocation for the same name, so equal names compare by pointer.
    pub text: Arc<str>,
    /// Soundex of the letters.
    pub soundex: Code,
    /// Double Metaphone primary code.
    pub metaphone: Code,
    /// Double Metaphone alternate code.
    pub metaphone_alt: Code,
    /// NYSIIS code.
    pub nysiis: Code,
    /// Nickname groups (given names only; sorted).
    pub nick: Arc<[u32]>,
    /// Relative frequency of this value in the population, filled by the model
    /// (0 when the model has no table for the field).
    pub tf: f32,
}

impl NameKeys {
    fn new(text: String, with_nicknames: bool) -> Self {
        let letters: String = text.chars().filter(|c| *c != ' ').collect();
        let (dm1, dm2) = phonetic::double_metaphone(&letters);
        let nick: Arc<[u32]> = if with_nicknames {
            NicknameTable::shipped().groups(&text).into()
        } else {
            Arc::new([])
        };
        NameKeys {
            soundex: pack(&phonetic::soundex(&letters)),
            metaphone: pack(&dm1),
            metaphone_alt: pack(&dm2),
            nysiis: pack(&phonetic::nysiis(&letters)),
            nick,
            tf: 0.0,
            text: text.into(),
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
///
/// Serializable so the service can snapshot its index (see `service::snapshot`); the
/// encoding is internal and checked against a fingerprint of the code and model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
    /// (Not serialized: a `&'static str` cannot be deserialized from a short-lived
    /// buffer. The snapshot stores it beside, as [`suffix_code`] / [`suffix_from_code`].)
    #[serde(skip)]
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

/// The position of a suffix in the suffix table, for compact storage.
pub fn suffix_code(suffix: Option<&'static str>) -> Option<u8> {
    let s = suffix?;
    crate::normalize::SUFFIXES
        .iter()
        .position(|x| *x == s)
        .and_then(|i| u8::try_from(i).ok())
}

/// The suffix at a position of the suffix table ([`suffix_code`]); `None` for a code out
/// of range.
pub fn suffix_from_code(code: u8) -> Option<&'static str> {
    crate::normalize::SUFFIXES.get(usize::from(code)).copied()
}

impl Prepared {
    /// Normalises a record and derives its keys; placeholders become missing.
    /// Term frequencies stay 0 until a model fills them.
    pub fn new(r: &Record, placeholders: &Placeholders) -> Prepared {
        Prepared::build(r, placeholders, derive_name, derive_value, |d| {
            placeholders.is_placeholder_date(d)
        })
    }

    /// As [`Prepared::new`], deriving names through a shared cache: the same result, much
    /// faster over many records, since names repeat (bulk preparation).
    pub fn new_cached(r: &Record, placeholders: &Placeholders, cache: &NameCache) -> Prepared {
        Prepared::build(
            r,
            placeholders,
            |raw, kind| cache.derive(raw, kind),
            |raw, kind| cache.value(raw, kind),
            |d| cache.is_placeholder_date(d, placeholders),
        )
    }

    fn build(
        r: &Record,
        placeholders: &Placeholders,
        mut name: impl FnMut(&str, NameKind) -> Option<DerivedName>,
        mut value: impl FnMut(&str, ValueKind) -> Option<Box<str>>,
        placeholder_date: impl Fn(&PartialDate) -> bool,
    ) -> Prepared {
        let given = r
            .given_name
            .as_deref()
            .and_then(|s| name(s, NameKind::Given));
        let family = r
            .family_name
            .as_deref()
            .and_then(|s| name(s, NameKind::Family));
        let (g_ph, f_ph) = placeholders.is_placeholder_name(
            given.as_ref().map(|n| &*n.keys.text),
            family.as_ref().map(|n| &*n.keys.text),
        );
        let suffix = family
            .as_ref()
            .and_then(|n| n.suffix)
            .or(given.as_ref().and_then(|n| n.suffix));
        let given = given.filter(|_| !g_ph).map(|n| n.keys);
        let family = family.filter(|_| !f_ph).map(|n| n.keys);
        let previous = r
            .previous_family_names
            .iter()
            .filter_map(|s| name(s, NameKind::Family))
            .filter(|n| !placeholders.is_placeholder_family(&n.keys.text))
            .map(|n| n.keys)
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
            birth: r.birth_date.filter(|d| !placeholder_date(d)),
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
                .and_then(|c| value(c, ValueKind::City)),
            postcode: r
                .address
                .postal_code
                .as_deref()
                .and_then(|c| value(c, ValueKind::Postcode)),
            postcode_tf: 0.0,
            multiple_birth_order: r.multiple_birth_order,
        }
    }
}

/// Which derivation a name gets: given names also look up nickname groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A given name (with nickname groups).
    Given,
    /// A family or previous family name.
    Family,
}

/// A normalised name's keys and the generational suffix split from it.
#[derive(Debug, Clone)]
struct DerivedName {
    keys: NameKeys,
    suffix: Option<&'static str>,
}

fn derive_name(raw: &str, kind: NameKind) -> Option<DerivedName> {
    normalize::name(raw).map(|n| DerivedName {
        suffix: n.suffix,
        keys: NameKeys::new(n.text, kind == NameKind::Given),
    })
}

/// Address values that repeat across records (a memo pays off for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    City,
    Postcode,
}

fn derive_value(raw: &str, kind: ValueKind) -> Option<Box<str>> {
    match kind {
        ValueKind::City => Some(normalize::fold(raw)).filter(|c| !c.is_empty()),
        ValueKind::Postcode => normalize::postcode(raw),
    }
    .map(String::into_boxed_str)
}

const SHARDS: usize = 64;

#[derive(Default)]
struct Shard {
    /// Raw spelling → derivation (`None`: nothing left after normalising).
    raw: [AHashMap<Box<str>, Option<DerivedName>>; 2],
    /// Folded text → keys, so case and accent variants share one [`NameKeys`].
    folded: [AHashMap<Arc<str>, NameKeys>; 2],
    /// Raw city or postcode → canonical form.
    values: [AHashMap<Box<str>, Option<Box<str>>>; 2],
}

/// A concurrent memo of name derivations (folding, phonetic codes, nickname groups) for
/// bulk preparation. Names repeat heavily in real populations, so most records hit the
/// cache; every record with the same folded name then shares one [`NameKeys::text`]
/// allocation. Sharded behind mutexes: rayon workers rarely meet on a shard.
pub struct NameCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: ahash::RandomState,
    /// The placeholder date list and its parsed dates (`None`: compare formatted).
    placeholder_dates: OnceLock<Option<PlaceholderDates>>,
}

type PlaceholderDates = (Vec<String>, Vec<PartialDate>);

impl Default for NameCache {
    fn default() -> Self {
        NameCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
            placeholder_dates: OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for NameCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameCache").finish_non_exhaustive()
    }
}

impl NameCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, s: &str) -> std::sync::MutexGuard<'_, Shard> {
        // A poisoned shard only means another worker panicked mid-insert; the maps hold
        // complete entries either way.
        self.shards[self.hasher.hash_one(s) as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// [`Placeholders::is_placeholder_date`] without formatting the date: the placeholder
    /// list is parsed once (per list, remembered by its first caller) and dates compare as
    /// values; a list entry that does not parse back to itself keeps the formatting check.
    fn is_placeholder_date(&self, d: &PartialDate, placeholders: &Placeholders) -> bool {
        let parsed = self.placeholder_dates.get_or_init(|| {
            let mut dates = Vec::new();
            for s in &placeholders.birth_dates {
                match PartialDate::parse_iso(s) {
                    Ok(p) if p.to_string() == *s => dates.push(p),
                    _ => return None,
                }
            }
            Some((placeholders.birth_dates.clone(), dates))
        });
        match parsed {
            Some((list, dates)) if *list == placeholders.birth_dates => dates.contains(d),
            _ => placeholders.is_placeholder_date(d),
        }
    }

    fn value(&self, raw: &str, kind: ValueKind) -> Option<Box<str>> {
        let k = kind as usize;
        if let Some(hit) = self.shard(raw).values[k].get(raw) {
            return hit.clone();
        }
        let v = derive_value(raw, kind);
        self.shard(raw).values[k].insert(raw.into(), v.clone());
        v
    }

    fn derive(&self, raw: &str, kind: NameKind) -> Option<DerivedName> {
        let k = kind as usize;
        if let Some(hit) = self.shard(raw).raw[k].get(raw) {
            return hit.clone();
        }
        let derived = normalize::name(raw).map(|n| {
            let keys = {
                let shard = self.shard(&n.text);
                shard.folded[k].get(n.text.as_str()).cloned()
            };
            let keys = keys.unwrap_or_else(|| {
                let keys = NameKeys::new(n.text, kind == NameKind::Given);
                self.shard(&keys.text).folded[k]
                    .entry(keys.text.clone())
                    .or_insert(keys)
                    .clone()
            });
            DerivedName {
                keys,
                suffix: n.suffix,
            }
        });
        self.shard(raw).raw[k].insert(raw.into(), derived.clone());
        derived
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
    fn cached_preparation_equals_plain_preparation() {
        let mut recs = vec![rec()];
        for (g, f, prev) in [
            ("Robert", "SMITH", "Jones"),
            ("robert", "Smith", ""),
            ("John", "Doe", ""),
            ("Dr. José", "García Jr", "Núñez"),
            ("  JOSE ", "garcia-lopez", "Unknown"),
            ("Baby Girl", "O'Brien", ""),
            ("Mr", "Smith", ""),
        ] {
            let mut r = rec();
            r.given_name = Some(g.into());
            r.family_name = Some(f.into());
            r.previous_family_names = vec![prev.into()];
            r.address.city = Some(format!(" São {f} "));
            r.birth_date = PartialDate::parse_iso(if g.len() % 3 == 0 {
                "1970-01-01"
            } else {
                "1970-01"
            })
            .ok();
            r.address.postal_code = Some(
                if g.len() % 2 == 0 {
                    "02139-1234"
                } else {
                    "K1A 0B1"
                }
                .into(),
            );
            recs.push(r);
        }
        let ph = Placeholders::default();
        let cache = NameCache::new();
        for _ in 0..2 {
            for r in &recs {
                assert_eq!(Prepared::new_cached(r, &ph, &cache), Prepared::new(r, &ph));
            }
        }
        // Equal folded names share one allocation, across raw spellings.
        let a = Prepared::new_cached(&recs[1], &ph, &cache);
        let b = Prepared::new_cached(&recs[2], &ph, &cache);
        let (fa, fb) = (a.family.unwrap(), b.family.unwrap());
        assert!(Arc::ptr_eq(&fa.text, &fb.text));
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
