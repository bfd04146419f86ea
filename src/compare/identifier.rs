//! Identifier agreement (national ids, MRNs): exact, or one keying slip away.
//!
//! Values arrive canonical (uppercase alphanumerics, no separators); nothing is allocated.

/// How two identifier values agree, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdAgreement {
    /// Identical.
    Exact,
    /// Same length, exactly one character different.
    OneSubstitution,
    /// Same length, exactly one pair of different adjacent characters swapped.
    AdjacentTransposition,
    /// Anything else, including different lengths.
    Disagree,
}

/// Compares two canonical identifier values; symmetric.
///
/// Missing values are the caller's concern: two empty strings are [`IdAgreement::Exact`].
/// Lengths count characters, so a stray non-ASCII character is still one substitution.
pub fn compare_identifiers(a: &str, b: &str) -> IdAgreement {
    if a == b {
        IdAgreement::Exact
    } else if a.is_ascii() && b.is_ascii() {
        near_miss(a.as_bytes().iter().copied(), b.as_bytes().iter().copied())
    } else {
        near_miss(a.chars(), b.chars())
    }
}

/// Classifies two unequal sequences by their differing positions, stopping at the third.
fn near_miss<T, I>(a: I, b: I) -> IdAgreement
where
    T: PartialEq + Copy,
    I: Iterator<Item = T> + Clone,
{
    if a.clone().count() != b.clone().count() {
        return IdAgreement::Disagree;
    }
    // (position, a's element, b's element) of the first two differences.
    let mut diffs: [Option<(usize, T, T)>; 2] = [None, None];
    let mut count = 0;
    for (i, (x, y)) in a.zip(b).enumerate() {
        if x != y {
            if count == 2 {
                return IdAgreement::Disagree;
            }
            diffs[count] = Some((i, x, y));
            count += 1;
        }
    }
    match diffs {
        [Some(_), None] => IdAgreement::OneSubstitution,
        [Some((i, xa, ya)), Some((j, xb, yb))] if j == i + 1 && xa == yb && xb == ya => {
            IdAgreement::AdjacentTransposition
        }
        _ => IdAgreement::Disagree,
    }
}

#[cfg(test)]
mod tests {
    use super::IdAgreement::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn levels() {
        assert_eq!(compare_identifiers("123456789", "123456789"), Exact);
        assert_eq!(
            compare_identifiers("123456789", "123456780"),
            OneSubstitution
        );
        assert_eq!(
            compare_identifiers("123456789", "213456789"),
            AdjacentTransposition
        );
        assert_eq!(
            compare_identifiers("123456789", "123456798"),
            AdjacentTransposition
        );
        assert_eq!(
            compare_identifiers("MRN0417", "MRN0471"),
            AdjacentTransposition
        );
        // Two substitutions, or a swap of non-adjacent characters.
        assert_eq!(compare_identifiers("123456789", "023456780"), Disagree);
        assert_eq!(compare_identifiers("123456789", "323456781"), Disagree);
        // Adjacent but not a swap.
        assert_eq!(compare_identifiers("123456789", "213456788"), Disagree);
        assert_eq!(
            compare_identifiers("123456789", "124356789"),
            AdjacentTransposition
        );
        assert_eq!(
            compare_identifiers("123456789", "124456789"),
            OneSubstitution
        );
        // Length must match for the near-miss levels.
        assert_eq!(compare_identifiers("123456789", "12345678"), Disagree);
        assert_eq!(compare_identifiers("12345678", "123456789"), Disagree);
        assert_eq!(compare_identifiers("", "1"), Disagree);
        assert_eq!(compare_identifiers("", ""), Exact);
        // Characters, not bytes.
        assert_eq!(compare_identifiers("AB1", "ÅB1"), OneSubstitution);
        assert_eq!(compare_identifiers("ÅB1", "BÅ1"), AdjacentTransposition);
    }

    proptest! {
        #[test]
        fn symmetric(a in "[0-9A-C]{0,10}", b in "[0-9A-C]{0,10}") {
            prop_assert_eq!(compare_identifiers(&a, &b), compare_identifiers(&b, &a));
        }

        #[test]
        fn symmetric_near(a in "[0-9]{1,10}", i in 0usize..10, c in "[0-9]") {
            // A one-character edit and a swap of `a`, so the near-miss levels get exercised.
            let i = i % a.len();
            let mut sub = a.clone().into_bytes();
            sub[i] = c.as_bytes()[0];
            let sub = String::from_utf8(sub).unwrap();
            let mut swp = a.clone().into_bytes();
            swp.swap(i, (i + 1) % a.len());
            let swp = String::from_utf8(swp).unwrap();
            for b in [sub, swp] {
                let level = compare_identifiers(&a, &b);
                prop_assert_eq!(level, compare_identifiers(&b, &a));
                prop_assert!(level != Disagree || b.len() > 2, "{} {}", a, b);
            }
        }
    }
}
