//! Name frequency tables built from the 1990 US census lists, sampled by frequency.
//!
//! Names are rendered once (title case, `McX`, apostrophes and accents restored for a
//! short list) so records borrow them instead of allocating.

use std::sync::OnceLock;

use super::rng::{below_u32, Rng};
use crate::census::{self, FEMALE, LAST, MALE};
use crate::compare::nickname::NicknameTable;

/// Census spellings whose usual written form carries an apostrophe or accent.
/// The census drops both; the generator puts them back so records carry real punctuation.
const SPECIAL_SURNAMES: &[(&str, &str)] = &[
    ("OBRIEN", "O'Brien"),
    ("OCONNOR", "O'Connor"),
    ("ONEIL", "O'Neil"),
    ("ONEILL", "O'Neill"),
    ("ODONNELL", "O'Donnell"),
    ("OCONNELL", "O'Connell"),
    ("OKEEFE", "O'Keefe"),
    ("OHARA", "O'Hara"),
    ("ONEAL", "O'Neal"),
    ("OLEARY", "O'Leary"),
    ("OROURKE", "O'Rourke"),
    ("OSULLIVAN", "O'Sullivan"),
    ("OMALLEY", "O'Malley"),
    ("OSHEA", "O'Shea"),
    ("DANGELO", "D'Angelo"),
    ("DAMICO", "D'Amico"),
];

/// Surnames with an accented spelling (used for a configurable share of their bearers).
const ACCENTED_SURNAMES: &[(&str, &str)] = &[
    ("GARCIA", "García"),
    ("RODRIGUEZ", "Rodríguez"),
    ("MARTINEZ", "Martínez"),
    ("HERNANDEZ", "Hernández"),
    ("LOPEZ", "López"),
    ("GONZALEZ", "González"),
    ("PEREZ", "Pérez"),
    ("SANCHEZ", "Sánchez"),
    ("RAMIREZ", "Ramírez"),
    ("GOMEZ", "Gómez"),
    ("DIAZ", "Díaz"),
    ("ALVAREZ", "Álvarez"),
    ("JIMENEZ", "Jiménez"),
    ("FERNANDEZ", "Fernández"),
    ("GUTIERREZ", "Gutiérrez"),
    ("CHAVEZ", "Chávez"),
    ("VASQUEZ", "Vásquez"),
    ("DOMINGUEZ", "Domínguez"),
    ("MENDEZ", "Méndez"),
    ("MUNOZ", "Muñoz"),
    ("NUNEZ", "Núñez"),
    ("PENA", "Peña"),
    ("IBANEZ", "Ibáñez"),
    ("CASTANEDA", "Castañeda"),
    ("BENITEZ", "Benítez"),
    ("VELAZQUEZ", "Velázquez"),
    ("RIOS", "Ríos"),
    ("MULLER", "Müller"),
    ("SCHRODER", "Schröder"),
    ("FRANCOIS", "François"),
    ("BELANGER", "Bélanger"),
    ("LEVESQUE", "Lévesque"),
    ("GAGNE", "Gagné"),
    ("THERIAULT", "Thériault"),
    ("BERUBE", "Bérubé"),
];

/// Given names with an accented spelling.
const ACCENTED_GIVEN: &[(&str, &str)] = &[
    ("JOSE", "José"),
    ("MARIA", "María"),
    ("JESUS", "Jesús"),
    ("RAMON", "Ramón"),
    ("ANDRES", "Andrés"),
    ("RAUL", "Raúl"),
    ("JOAQUIN", "Joaquín"),
    ("HECTOR", "Héctor"),
    ("OSCAR", "Óscar"),
    ("RENE", "René"),
    ("ANDRE", "André"),
    ("CESAR", "César"),
    ("RUBEN", "Rubén"),
    ("JULIAN", "Julián"),
    ("ADRIAN", "Adrián"),
    ("SEBASTIAN", "Sebastián"),
    ("FABIAN", "Fabián"),
    ("AGUSTIN", "Agustín"),
    ("EFRAIN", "Efraín"),
    ("SOFIA", "Sofía"),
    ("LUCIA", "Lucía"),
    ("INES", "Inés"),
    ("ZOE", "Zoë"),
    ("CHLOE", "Chloé"),
    ("RENEE", "Renée"),
    ("ANGELICA", "Angélica"),
    ("VERONICA", "Verónica"),
    ("MONICA", "Mónica"),
    ("BELEN", "Belén"),
    ("ROCIO", "Rocío"),
    ("NOE", "Noé"),
];

/// One census list: rendered names and cumulative integer weights for binary-search sampling.
pub(crate) struct FreqTable {
    /// Title-cased plain spelling (no accents), index = census rank - 1.
    plain: Vec<Box<str>>,
    /// Accented or punctuated spelling where one exists.
    special: Vec<Option<&'static str>>,
    /// Whether `special` is a punctuation restoration (always used) rather than an accent
    /// (used for a share of bearers).
    punctuated: Vec<bool>,
    /// Cumulative weights; `cum[i]` is the sum of weights `0..=i`.
    cum: Vec<u32>,
}

impl FreqTable {
    /// Parses a census list. Names whose printed frequency rounds to 0.000 share the
    /// list's remaining cumulative mass evenly, so the long tail is still sampled.
    fn parse(
        text: &str,
        punctuated_forms: &[(&'static str, &'static str)],
        accented_forms: &[(&'static str, &'static str)],
    ) -> FreqTable {
        // Frequencies in thousandths of a percent: exact integers, so weights do not depend
        // on float rounding.
        let rows: Vec<(&str, u32, u32)> = census::rows(text)
            .map(|r| (r.name, r.freq_milli, r.cum_milli))
            .collect();
        let last_nonzero_cum = rows
            .iter()
            .filter(|r| r.1 > 0)
            .map(|r| r.2)
            .max()
            .unwrap_or_default();
        let final_cum = rows.last().map(|r| r.2).unwrap_or_default();
        let n_tail = rows.iter().filter(|r| r.1 == 0).count() as u64;
        // Scale by 1000 so the tail's share per name stays an integer > 0.
        let tail_weight = (u64::from(final_cum.saturating_sub(last_nonzero_cum)) * 1000)
            .checked_div(n_tail)
            .map_or(0, |w| w.max(1) as u32);
        let mut plain = Vec::with_capacity(rows.len());
        let mut special = Vec::with_capacity(rows.len());
        let mut punctuated = Vec::with_capacity(rows.len());
        let mut cum = Vec::with_capacity(rows.len());
        let mut total: u32 = 0;
        for (name, freq, _) in rows {
            let w = if freq > 0 { freq * 1000 } else { tail_weight };
            total += w;
            cum.push(total);
            plain.push(title_case(name).into_boxed_str());
            let find = |list: &[(&'static str, &'static str)]| {
                list.iter().find(|(c, _)| *c == name).map(|(_, s)| *s)
            };
            let punct = find(punctuated_forms);
            special.push(punct.or_else(|| find(accented_forms)));
            punctuated.push(punct.is_some());
        }
        FreqTable {
            plain,
            special,
            punctuated,
            cum,
        }
    }

    /// Number of names.
    pub(crate) fn len(&self) -> usize {
        self.plain.len()
    }

    /// A name index drawn by census frequency.
    pub(crate) fn sample(&self, rng: &mut Rng) -> u32 {
        let total = self.cum.last().copied().unwrap_or(0);
        let x = below_u32(rng, total.max(1));
        // First index whose cumulative weight exceeds x.
        self.cum.partition_point(|&c| c <= x) as u32
    }

    /// A name resembling `name` (plain spelling) in the way `kind` says, drawn by census
    /// frequency among the names of this table that do; `None` when no name does.
    pub(crate) fn alike(&self, name: &str, kind: Alike, rng: &mut Rng) -> Option<u32> {
        let name = name.to_ascii_uppercase();
        // A nickname of the name (Alfred/Fred) is the same name to a registrar, not a twin's.
        let nicknames = NicknameTable::shipped();
        let own_groups = nicknames.groups(&name.to_ascii_lowercase());
        let mut total = 0u64;
        let mut found: Vec<(u32, u64)> = Vec::new();
        let mut prev = 0u32;
        for (i, (plain, &cum)) in self.plain.iter().zip(&self.cum).enumerate() {
            let weight = u64::from(cum - prev);
            prev = cum;
            if kind.holds(&name, &plain.to_ascii_uppercase())
                && !NicknameTable::share_group(
                    own_groups,
                    nicknames.groups(&plain.to_ascii_lowercase()),
                )
            {
                total += weight;
                found.push((i as u32, total));
            }
        }
        if total == 0 {
            return None;
        }
        let x = super::rng::below(rng, total);
        let at = found.partition_point(|&(_, c)| c <= x);
        found.get(at).map(|&(i, _)| i)
    }

    /// The plain (unaccented, title-case) spelling.
    pub(crate) fn plain(&self, idx: u32) -> &str {
        &self.plain[idx as usize]
    }

    /// The name as the person writes it: punctuation always restored, accents when
    /// `accented` is true.
    pub(crate) fn render(&self, idx: u32, accented: bool) -> &str {
        let i = idx as usize;
        match self.special[i] {
            Some(s) if self.punctuated[i] || accented => s,
            _ => &self.plain[i],
        }
    }
}

/// How a co-twin's given name resembles the first twin's (see [`FreqTable::alike`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alike {
    /// One or two letters apart (Ava/Eva, Mary/Maria, Jayden/Hayden).
    Spelling,
    /// Another first letter, the same ending (Tracy/Stacy, Jayden/Brayden).
    Rhyme,
    /// The same first letter only (Richard/Robert).
    Initial,
    /// The other sex's form of the name (Daniel/Danielle, Paul/Paula): the other table.
    OtherSexForm,
}

impl Alike {
    /// Whether `candidate` (upper-case plain spelling) resembles `name` this way.
    fn holds(self, name: &str, candidate: &str) -> bool {
        if name == candidate || name.is_empty() || candidate.is_empty() {
            return false;
        }
        let (a, b) = (name.as_bytes(), candidate.as_bytes());
        match self {
            Alike::Spelling => {
                a.len().abs_diff(b.len()) <= 2
                    && crate::compare::string::levenshtein(name, candidate) <= 2
                    && a.len().min(b.len()) >= 3
            }
            Alike::Rhyme => {
                let n = 3.min(a.len()).min(b.len());
                a[0] != b[0] && a.len() >= 4 && b.len() >= 4 && a[a.len() - n..] == b[b.len() - n..]
            }
            Alike::Initial => a[0] == b[0],
            Alike::OtherSexForm => {
                let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
                short.len() >= 3
                    && long.len() - short.len() <= 3
                    && long.starts_with(&short[..short.len() - usize::from(short.len() > 4)])
            }
        }
    }
}

/// Which name table a given or middle name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameSource {
    /// Female given names.
    Female,
    /// Male given names.
    Male,
    /// Surnames (a middle name like "Fitzgerald").
    Surname,
}

/// The three census tables and the given names' nicknames, built once per process.
pub(crate) struct NameTables {
    /// Surnames.
    pub(crate) last: FreqTable,
    /// Female given names.
    pub(crate) female: FreqTable,
    /// Male given names.
    pub(crate) male: FreqTable,
    /// Title-cased nicknames of each female given name (by index).
    female_nicknames: Vec<Vec<Box<str>>>,
    /// Title-cased nicknames of each male given name (by index).
    male_nicknames: Vec<Vec<Box<str>>>,
}

impl NameTables {
    /// The tables, parsed from the embedded census lists on first use.
    pub(crate) fn shared() -> &'static NameTables {
        static TABLES: OnceLock<NameTables> = OnceLock::new();
        TABLES.get_or_init(|| {
            let female = FreqTable::parse(FEMALE, &[], ACCENTED_GIVEN);
            let male = FreqTable::parse(MALE, &[], ACCENTED_GIVEN);
            NameTables {
                last: FreqTable::parse(LAST, SPECIAL_SURNAMES, ACCENTED_SURNAMES),
                female_nicknames: nicknames_for(&female),
                male_nicknames: nicknames_for(&male),
                female,
                male,
            }
        })
    }

    /// The table a name source draws from.
    pub(crate) fn table(&self, src: NameSource) -> &FreqTable {
        match src {
            NameSource::Female => &self.female,
            NameSource::Male => &self.male,
            NameSource::Surname => &self.last,
        }
    }

    /// Nicknames of a given name (empty for surnames and names without any).
    pub(crate) fn nicknames(&self, src: NameSource, idx: u32) -> &[Box<str>] {
        let lists = match src {
            NameSource::Female => &self.female_nicknames,
            NameSource::Male => &self.male_nicknames,
            NameSource::Surname => return &[],
        };
        lists.get(idx as usize).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Looks up every name of a given-name table in the shipped nickname table.
fn nicknames_for(t: &FreqTable) -> Vec<Vec<Box<str>>> {
    let nick = NicknameTable::shipped();
    (0..t.len() as u32)
        .map(|i| {
            let formal = t.plain(i).to_ascii_lowercase();
            nick.nicknames_of(&formal)
                .into_iter()
                .filter(|n| !n.is_empty() && *n != formal)
                .map(|n| title_case(n).into_boxed_str())
                .collect()
        })
        .collect()
}

/// `SMITH` → `Smith`, `MCDONALD` → `McDonald`.
pub(crate) fn title_case(upper: &str) -> String {
    let lower = upper.to_ascii_lowercase();
    let mut out = String::with_capacity(lower.len());
    let mut start = true;
    for (i, c) in lower.char_indices() {
        let after_mc = i == 2 && lower.len() > 3 && lower.starts_with("mc");
        if start || after_mc {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_ascii_alphabetic();
    }
    out
}

/// Folds the accented letters this generator produces to ASCII (for emails and for
/// systems that cannot store accents).
pub(crate) fn fold_accent(c: char) -> char {
    match c {
        'á' | 'à' | 'â' | 'ä' => 'a',
        'é' | 'è' | 'ê' | 'ë' => 'e',
        'í' | 'ì' | 'î' | 'ï' => 'i',
        'ó' | 'ò' | 'ô' | 'ö' => 'o',
        'ú' | 'ù' | 'û' | 'ü' => 'u',
        'ñ' => 'n',
        'ç' => 'c',
        'Á' | 'À' | 'Â' | 'Ä' => 'A',
        'É' | 'È' | 'Ê' | 'Ë' => 'E',
        'Í' | 'Ì' | 'Î' | 'Ï' => 'I',
        'Ó' | 'Ò' | 'Ô' | 'Ö' => 'O',
        'Ú' | 'Ù' | 'Û' | 'Ü' => 'U',
        'Ñ' => 'N',
        'Ç' => 'C',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::rng::seeded;

    #[test]
    fn tables_parse_whole_lists() {
        let t = NameTables::shared();
        assert_eq!(t.last.len(), 88_799);
        assert_eq!(t.female.len(), 4_275);
        assert_eq!(t.male.len(), 1_219);
        assert_eq!(t.last.plain(0), "Smith");
        assert_eq!(t.male.plain(0), "James");
    }

    #[test]
    fn rendering_restores_punctuation_and_accents() {
        let t = NameTables::shared();
        let idx = |name: &str| (0..t.last.len() as u32).find(|&i| t.last.plain(i) == name);
        let obrien = idx("Obrien").unwrap();
        assert_eq!(t.last.render(obrien, false), "O'Brien");
        assert_eq!(t.last.render(obrien, true), "O'Brien");
        let h = idx("Hernandez").unwrap();
        assert_eq!(t.last.render(h, false), "Hernandez");
        assert_eq!(t.last.render(h, true), "Hernández");
        let mc = idx("McDonald").unwrap();
        assert_eq!(t.last.render(mc, true), "McDonald");
    }

    #[test]
    fn sampling_follows_frequency_including_the_tail() {
        let t = NameTables::shared();
        let mut rng = seeded(3, 0);
        let mut counts = vec![0u32; t.last.len()];
        let n = 200_000;
        for _ in 0..n {
            counts[t.last.sample(&mut rng) as usize] += 1;
        }
        // Smith is 1.006% of the census mass (90.483% listed): about 0.0111 of draws.
        let smith = f64::from(counts[0]) / f64::from(n);
        assert!((0.009..0.013).contains(&smith), "{smith}");
        // The 0.000 tail (13% of listed mass over 69,960 names) is sampled.
        let tail: u32 = counts[18_839..].iter().sum();
        let share = f64::from(tail) / f64::from(n);
        assert!((0.12..0.17).contains(&share), "{share}");
    }
}
