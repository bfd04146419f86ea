//! Nickname equivalence: which given names are the same name (Bob ~ Robert).
//!
//! Built from a `name1,relationship,name2` table; the shipped one is `data/nicknames.csv`.

use std::sync::OnceLock;

use ahash::AHashMap;

use crate::error::{Error, Result};

/// The shipped table (see `data/SOURCES.md` for provenance and licence).
const SHIPPED_CSV: &str = include_str!("../../data/nicknames.csv");

/// Groups of interchangeable given names.
///
/// Each formal name (`name1` in the file) defines one group: itself and all its nicknames. A
/// name may be in several groups ("ron" is in aaron's and ronald's), so two names are
/// equivalent when they share at least one group. This is deliberately *not* transitive:
/// aaron ~ ron and ron ~ ronald, but aaron and ronald are not equivalent.
///
/// Names are looked up in the caller's normalised form (lowercase ASCII letters, single
/// spaces); the table's own entries are folded the same way when loaded, so `k.c.` is
/// stored as `kc`.
///
/// # Example
/// ```
/// use empi::compare::NicknameTable;
///
/// let t = NicknameTable::shipped();
/// assert!(t.are_equivalent("bob", "robert"));
/// assert!(!t.are_equivalent("bob", "margaret"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct NicknameTable {
    /// Name → name id.
    ids: AHashMap<Box<str>, u32>,
    /// Name id → name.
    names: Vec<Box<str>>,
    /// Name id → sorted ids of the groups it belongs to.
    groups_of: Vec<Box<[u32]>>,
    /// Group id → member name ids, formal name first, then the file's order.
    members: Vec<Box<[u32]>>,
}

impl NicknameTable {
    /// The table built from the shipped `data/nicknames.csv`, built once on first use.
    pub fn shipped() -> &'static NicknameTable {
        static TABLE: OnceLock<NicknameTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            // Invariant: the embedded file is fixed at compile time and the unit test
            // `shipped_table_loads` proves it parses.
            NicknameTable::from_csv(SHIPPED_CSV).expect("shipped data/nicknames.csv is valid")
        })
    }

    /// Builds a table from CSV text with the header `name1,relationship,name2`, where every
    /// row's relationship is `has_nickname`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `nicknames` and the line number when the header is
    /// wrong, a row does not have three columns, the relationship is not `has_nickname`, or
    /// a name has no letters. Messages never quote the file's values.
    pub fn from_csv(text: &str) -> Result<Self> {
        let bad =
            |line: u64, what: &str| Error::invalid("nicknames", format!("line {line}: {what}"));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());

        let mut builder = Builder::default();
        let mut saw_header = false;
        for row in reader.records() {
            let row = row.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                bad(line, "unreadable csv row")
            })?;
            let line = row.position().map_or(0, |p| p.line());
            if row.iter().all(str::is_empty) {
                continue;
            }
            if row.len() != 3 {
                return Err(bad(line, "expected 3 columns: name1,relationship,name2"));
            }
            if !saw_header {
                saw_header = true;
                if &row[0] != "name1" || &row[1] != "relationship" || &row[2] != "name2" {
                    return Err(bad(line, "expected the header name1,relationship,name2"));
                }
                continue;
            }
            if &row[1] != "has_nickname" {
                return Err(bad(line, "relationship must be has_nickname"));
            }
            let formal = fold(&row[0]).ok_or_else(|| bad(line, "name1 has no letters"))?;
            let nick = fold(&row[2]).ok_or_else(|| bad(line, "name2 has no letters"))?;
            builder.add(formal, nick);
        }
        if !saw_header {
            return Err(bad(1, "expected the header name1,relationship,name2"));
        }
        Ok(builder.finish())
    }

    /// The sorted ids of the groups `name` belongs to; empty when the name is unknown.
    ///
    /// Callers scoring many pairs can look these up once per record and compare them with
    /// [`NicknameTable::share_group`].
    pub fn groups(&self, name: &str) -> &[u32] {
        match self.ids.get(name) {
            Some(&id) => &self.groups_of[id as usize],
            None => &[],
        }
    }

    /// Whether two sorted group-id slices have a common element (no allocation).
    pub fn share_group(a: &[u32], b: &[u32]) -> bool {
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].cmp(&b[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// Whether `a` and `b` are the same name or share a nickname group.
    pub fn are_equivalent(&self, a: &str, b: &str) -> bool {
        a == b || Self::share_group(self.groups(a), self.groups(b))
    }

    /// The other members of every group that contains `formal`, without repeats.
    ///
    /// Order is deterministic: first the group `formal` itself heads (its nicknames in the
    /// file's order), then the other groups in the order their formal names first appear
    /// in the file. Empty when the name is unknown.
    pub fn nicknames_of(&self, formal: &str) -> Vec<&str> {
        let Some(&me) = self.ids.get(formal) else {
            return Vec::new();
        };
        let groups = &self.groups_of[me as usize];
        // The group headed by `formal`, if any, goes first.
        let own = groups
            .iter()
            .copied()
            .find(|&g| self.members[g as usize][0] == me);
        let ordered = own
            .into_iter()
            .chain(groups.iter().copied().filter(|&g| Some(g) != own));
        let mut seen: Vec<u32> = vec![me];
        let mut out = Vec::new();
        for g in ordered {
            for &m in self.members[g as usize].iter() {
                if !seen.contains(&m) {
                    seen.push(m);
                    out.push(&*self.names[m as usize]);
                }
            }
        }
        out
    }

    /// Number of groups (formal names) in the table.
    pub fn group_count(&self) -> usize {
        self.members.len()
    }
}

/// Accumulates rows, then freezes into a [`NicknameTable`].
#[derive(Default)]
struct Builder {
    ids: AHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    /// Formal name id → group id.
    group_of_formal: AHashMap<u32, u32>,
    members: Vec<Vec<u32>>,
}

impl Builder {
    fn intern(&mut self, name: String) -> u32 {
        if let Some(&id) = self.ids.get(name.as_str()) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let name: Box<str> = name.into_boxed_str();
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    fn add(&mut self, formal: String, nick: String) {
        let f = self.intern(formal);
        let n = self.intern(nick);
        let next = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        let g = *self.group_of_formal.entry(f).or_insert(next);
        if g == next {
            self.members.push(vec![f]);
        }
        let group = &mut self.members[g as usize];
        if !group.contains(&n) {
            group.push(n);
        }
    }

    fn finish(self) -> NicknameTable {
        let mut groups_of: Vec<Vec<u32>> = vec![Vec::new(); self.names.len()];
        for (g, members) in self.members.iter().enumerate() {
            for &m in members {
                // Group ids grow with `g`, so each list comes out sorted and unique.
                groups_of[m as usize].push(g as u32);
            }
        }
        NicknameTable {
            ids: self.ids,
            names: self.names,
            groups_of: groups_of.into_iter().map(Vec::into_boxed_slice).collect(),
            members: self
                .members
                .into_iter()
                .map(Vec::into_boxed_slice)
                .collect(),
        }
    }
}

/// Folds a table entry into the caller's normalised form: lowercase ASCII letters and single
/// spaces; other characters are dropped. `None` when no letter remains.
fn fold(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii_alphabetic() {
            out.push(c.to_ascii_lowercase());
        } else if c.is_whitespace() && !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> &'static NicknameTable {
        NicknameTable::shipped()
    }

    #[test]
    fn shipped_table_loads() {
        let t = NicknameTable::from_csv(SHIPPED_CSV).unwrap();
        // 1,151 distinct formal names in the shipped file.
        assert_eq!(t.group_count(), 1151);
        assert!(!t.groups("robert").is_empty());
    }

    #[test]
    fn known_equivalences() {
        assert!(t().are_equivalent("bob", "robert"));
        assert!(t().are_equivalent("robert", "bob"));
        assert!(t().are_equivalent("bill", "william"));
        assert!(t().are_equivalent("peggy", "margaret"));
        assert!(t().are_equivalent("margaret", "peggy"));
        // Both nicknames of robert.
        assert!(t().are_equivalent("bob", "rob"));
        // "ron" is in aaron's and ronald's groups.
        assert!(t().are_equivalent("ron", "aaron"));
        assert!(t().are_equivalent("ron", "ronald"));
    }

    #[test]
    fn unrelated_names_are_not_equivalent() {
        assert!(!t().are_equivalent("bob", "margaret"));
        assert!(!t().are_equivalent("peggy", "william"));
        assert!(!t().are_equivalent("zzzz", "robert"));
        assert!(!t().are_equivalent("zzzz", "yyyy"));
        // Sharing a nickname through different groups is not enough: not transitive.
        assert!(!t().are_equivalent("aaron", "ronald"));
        assert!(t().are_equivalent("zzzz", "zzzz"));
    }

    #[test]
    fn groups_are_sorted_and_unknown_is_empty() {
        for name in ["ron", "bob", "bill", "robert", "chris"] {
            let g = t().groups(name);
            assert!(!g.is_empty(), "{name}");
            assert!(g.windows(2).all(|w| w[0] < w[1]), "{name}");
        }
        assert!(t().groups("zzzz").is_empty());
        assert!(t().groups("").is_empty());
    }

    #[test]
    fn share_group_intersects() {
        assert!(NicknameTable::share_group(&[1, 4, 9], &[2, 3, 9]));
        assert!(NicknameTable::share_group(&[5], &[1, 5, 7]));
        assert!(!NicknameTable::share_group(&[1, 4, 9], &[2, 3, 10]));
        assert!(!NicknameTable::share_group(&[], &[1]));
        assert!(!NicknameTable::share_group(&[], &[]));
    }

    #[test]
    fn nicknames_of_lists_own_group_first_without_repeats() {
        let nicks = t().nicknames_of("robert");
        // robert's own row order in the file starts bill, billy, bob, bobby.
        assert_eq!(&nicks[..4], &["bill", "billy", "bob", "bobby"]);
        assert!(nicks.contains(&"rob") && nicks.contains(&"rupert"));
        assert!(!nicks.contains(&"robert"));
        let mut dedup = nicks.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), nicks.len());
        // Deterministic across calls.
        assert_eq!(nicks, t().nicknames_of("robert"));
        assert!(t().nicknames_of("zzzz").is_empty());
        // A name that is only ever a nickname gets its groups' other members.
        let ron = t().nicknames_of("ron");
        assert!(ron.contains(&"aaron") && ron.contains(&"ronald"));
    }

    #[test]
    fn from_csv_builds_groups_and_folds_names() {
        let t = NicknameTable::from_csv(
            "name1,relationship,name2\r\nAaron,has_nickname,Ron\r\nronald,has_nickname,ron\n\
             casey,has_nickname,k.c.\n\nronald,has_nickname,ronnie\n",
        )
        .unwrap();
        assert_eq!(t.group_count(), 3);
        assert!(t.are_equivalent("aaron", "ron"));
        assert!(t.are_equivalent("ronnie", "ronald"));
        assert!(!t.are_equivalent("aaron", "ronnie"));
        assert!(t.are_equivalent("kc", "casey"));
        assert_eq!(t.nicknames_of("ronald"), vec!["ron", "ronnie"]);
        // ronnie comes through ronald's group.
        assert_eq!(t.nicknames_of("ron"), vec!["aaron", "ronald", "ronnie"]);
    }

    #[test]
    fn from_csv_errors_name_the_line_not_the_value() {
        let e = NicknameTable::from_csv("name1,relationship,name2\nbob,is_not,robert\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("nicknames"), "{e}");
        assert!(!e.contains("bob"), "{e}");
        let e = NicknameTable::from_csv("name1,relationship,name2\nx,has_nickname,y\nbob,robert\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
        let e = NicknameTable::from_csv("a,b,c\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("header"), "{e}");
        let e = NicknameTable::from_csv("name1,relationship,name2\n...,has_nickname,x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(NicknameTable::from_csv("").is_err());
    }
}
