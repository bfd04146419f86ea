//! String comparators: Jaro–Winkler similarity and edit distances.
//!
//! Normalised names are short ASCII, so each comparator has an allocation-free byte path for
//! ASCII inputs of at most 64 bytes (one `u64` of flags or bit-vector state) and falls back
//! to `strsim` otherwise (non-ASCII input, which is outside the normalised contract, or
//! longer strings). The byte paths compute exactly what `strsim` computes on the same input;
//! the property tests hold them to that.

/// Longest input, in bytes, handled by the one-word byte paths.
const WORD: usize = 64;

/// Jaro–Winkler similarity in `[0, 1]`; 1 means identical (Winkler 1990, prefix scale 0.1,
/// at most 4 prefix characters, boost applied above a Jaro score of 0.7).
///
/// Two empty strings are identical (1.0); one empty string against a non-empty one is 0.0.
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    if a.is_ascii() && b.is_ascii() && a.len() <= WORD && b.len() <= WORD {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        let sim = jaro_bytes(a, b);
        // Same boost as strsim::generic_jaro_winkler, in the same floating-point order.
        if sim > 0.7 {
            let prefix = a.iter().zip(b).take(4).take_while(|(x, y)| x == y).count();
            sim + 0.1 * prefix as f64 * (1.0 - sim)
        } else {
            sim
        }
    } else {
        strsim::jaro_winkler(a, b)
    }
}

/// Levenshtein distance: the fewest single-character insertions, deletions and
/// substitutions that turn `a` into `b`.
pub fn levenshtein(a: &str, b: &str) -> usize {
    match ascii_pattern(a, b) {
        Some((p, t)) => bit_parallel_distance::<false>(p, t),
        None => strsim::levenshtein(a, b),
    }
}

/// Restricted Damerau–Levenshtein distance, also called optimal string alignment (OSA):
/// Levenshtein plus the transposition of two adjacent characters as one edit, where no
/// substring is edited twice.
///
/// OSA rather than the unrestricted distance because it models exactly the keying errors we
/// score (one swap of neighbouring letters: "jonh" → "john" is 1), is cheaper (no
/// per-alphabet table of last positions), and differs from the unrestricted distance only
/// when a transposed pair is edited again, as in "ca" → "abc" (OSA 3, unrestricted 2), which
/// is not a plausible typo. OSA does not satisfy the triangle inequality; nothing here
/// needs it.
pub fn damerau_levenshtein(a: &str, b: &str) -> usize {
    match ascii_pattern(a, b) {
        Some((p, t)) => bit_parallel_distance::<true>(p, t),
        None => strsim::osa_distance(a, b),
    }
}

/// For two ASCII strings, `(pattern, text)` with the pattern at most [`WORD`] bytes.
fn ascii_pattern<'s>(a: &'s str, b: &'s str) -> Option<(&'s [u8], &'s [u8])> {
    if !(a.is_ascii() && b.is_ascii()) {
        return None;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() <= WORD {
        Some((a, b))
    } else if b.len() <= WORD {
        Some((b, a))
    } else {
        None
    }
}

/// Jaro similarity with the same greedy matching as `strsim::generic_jaro`, tracking matched
/// positions in two `u64`s. Needs both lengths at most [`WORD`].
fn jaro_bytes(a: &[u8], b: &[u8]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return if a.is_empty() && b.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let range = (a.len().max(b.len()) / 2).saturating_sub(1);
    let (mut a_flags, mut b_flags) = (0u64, 0u64);
    let mut matches = 0usize;
    for (i, &x) in a.iter().enumerate() {
        let lo = i.saturating_sub(range);
        let hi = (i + range + 1).min(b.len());
        for (j, &y) in b.iter().enumerate().take(hi).skip(lo) {
            if y == x && b_flags & (1 << j) == 0 {
                a_flags |= 1 << i;
                b_flags |= 1 << j;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    // Walk the matched characters of both strings in order; each mismatch is half a
    // transposition.
    let mut half = 0usize;
    while a_flags != 0 {
        let i = a_flags.trailing_zeros() as usize;
        let j = b_flags.trailing_zeros() as usize;
        half += usize::from(a[i] != b[j]);
        a_flags &= a_flags - 1;
        b_flags &= b_flags - 1;
    }
    let transpositions = half / 2;
    let m = matches as f64;
    ((m / a.len() as f64) + (m / b.len() as f64) + ((matches - transpositions) as f64 / m)) / 3.0
}

/// Edit distance by Myers' bit-vector algorithm in Hyyrö's formulation (Hyyrö 2003, "A
/// bit-vector algorithm for computing Levenshtein and Damerau edit distances"): Levenshtein,
/// or with `OSA` also adjacent transpositions. `pattern` must be ASCII and at most [`WORD`]
/// bytes; `text` ASCII of any length.
fn bit_parallel_distance<const OSA: bool>(pattern: &[u8], text: &[u8]) -> usize {
    if pattern.is_empty() {
        return text.len();
    }
    // peq[c]: bit i set when pattern[i] == c.
    let mut peq = [0u64; 128];
    for (i, &c) in pattern.iter().enumerate() {
        peq[usize::from(c & 0x7f)] |= 1 << i;
    }
    let last = 1u64 << (pattern.len() - 1);
    let (mut vp, mut vn, mut d0, mut prev_eq) = (!0u64, 0u64, 0u64, 0u64);
    let mut dist = pattern.len();
    for &c in text {
        let eq = peq[usize::from(c & 0x7f)];
        let mut x = eq | vn;
        if OSA {
            // A transposition: this and the previous text character match the pattern
            // swapped, where the diagonal did not already match.
            x |= ((!d0 & eq) << 1) & prev_eq;
            prev_eq = eq;
        }
        d0 = (((eq & vp).wrapping_add(vp)) ^ vp) | x;
        let hp = vn | !(d0 | vp);
        let hn = d0 & vp;
        if hp & last != 0 {
            dist += 1;
        } else if hn & last != 0 {
            dist -= 1;
        }
        let hp = (hp << 1) | 1;
        let hn = hn << 1;
        vp = hn | !(d0 | hp);
        vn = hp & d0;
    }
    dist
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(x: f64, y: f64) -> bool {
        (x - y).abs() < 0.0005
    }

    #[test]
    fn jaro_winkler_published_values() {
        // Winkler (1990) / Cohen et al. (2003) worked examples.
        // MARTHA/MARHTA: jaro 0.944, jaro-winkler 0.961.
        assert!(
            close(jaro_winkler("martha", "marhta"), 0.961),
            "{}",
            jaro_winkler("martha", "marhta")
        );
        // DWAYNE/DUANE: jaro 0.822, jaro-winkler 0.840.
        assert!(
            close(jaro_winkler("dwayne", "duane"), 0.840),
            "{}",
            jaro_winkler("dwayne", "duane")
        );
        // DIXON/DICKSONX: jaro 0.767, jaro-winkler 0.813.
        assert!(
            close(jaro_winkler("dixon", "dicksonx"), 0.813),
            "{}",
            jaro_winkler("dixon", "dicksonx")
        );
        assert_eq!(jaro_winkler("smith", "smith"), 1.0);
        assert_eq!(jaro_winkler("", ""), 1.0);
        assert_eq!(jaro_winkler("abc", ""), 0.0);
        assert_eq!(jaro_winkler("abc", "xyz"), 0.0);
    }

    #[test]
    fn levenshtein_examples() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("jon", "john"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("john", "jonh"), 2);
    }

    #[test]
    fn damerau_counts_adjacent_swap_once() {
        assert_eq!(damerau_levenshtein("john", "jonh"), 1);
        assert_eq!(damerau_levenshtein("martha", "marhta"), 1);
        assert_eq!(damerau_levenshtein("kitten", "sitting"), 3);
        assert_eq!(damerau_levenshtein("", "ab"), 2);
        assert_eq!(damerau_levenshtein("ab", ""), 2);
        // OSA, not the unrestricted distance (which would give 2).
        assert_eq!(damerau_levenshtein("ca", "abc"), 3);
        // Long inputs take the fallback path and agree with strsim.
        let long_a = "a".repeat(70) + "bc";
        let long_b = "a".repeat(70) + "cb";
        assert_eq!(damerau_levenshtein(&long_a, &long_b), 1);
    }

    #[test]
    fn non_ascii_counts_characters_not_bytes() {
        assert_eq!(levenshtein("jose", "josé"), 1);
        assert_eq!(damerau_levenshtein("jose", "josé"), 1);
        assert!(jaro_winkler("josé", "josé") == 1.0);
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z ]{0,14}"
    }

    proptest! {
        #[test]
        fn jaro_winkler_symmetric_and_bounded(a in name(), b in name()) {
            let x = jaro_winkler(&a, &b);
            prop_assert!((0.0..=1.0).contains(&x));
            prop_assert_eq!(x, jaro_winkler(&b, &a));
        }

        #[test]
        fn edit_distances_symmetric(a in name(), b in name()) {
            prop_assert_eq!(levenshtein(&a, &b), levenshtein(&b, &a));
            prop_assert_eq!(damerau_levenshtein(&a, &b), damerau_levenshtein(&b, &a));
            prop_assert_eq!(levenshtein(&a, &a), 0);
            prop_assert_eq!(damerau_levenshtein(&a, &a), 0);
        }

        #[test]
        fn byte_paths_match_strsim(a in "[a-d ]{0,20}", b in "[a-d ]{0,20}") {
            prop_assert_eq!(jaro_winkler(&a, &b).to_bits(), strsim::jaro_winkler(&a, &b).to_bits());
            prop_assert_eq!(levenshtein(&a, &b), strsim::levenshtein(&a, &b));
            prop_assert_eq!(damerau_levenshtein(&a, &b), strsim::osa_distance(&a, &b));
            prop_assert!(damerau_levenshtein(&a, &b) <= levenshtein(&a, &b));
        }

        #[test]
        fn byte_paths_match_strsim_on_names(a in name(), b in name()) {
            prop_assert_eq!(jaro_winkler(&a, &b).to_bits(), strsim::jaro_winkler(&a, &b).to_bits());
            prop_assert_eq!(levenshtein(&a, &b), strsim::levenshtein(&a, &b));
            prop_assert_eq!(damerau_levenshtein(&a, &b), strsim::osa_distance(&a, &b));
        }

        #[test]
        fn byte_paths_match_strsim_near_the_word_size(
            a in "[ab]{55,75}",
            b in "[ab]{55,75}",
        ) {
            prop_assert_eq!(jaro_winkler(&a, &b).to_bits(), strsim::jaro_winkler(&a, &b).to_bits());
            prop_assert_eq!(levenshtein(&a, &b), strsim::levenshtein(&a, &b));
            prop_assert_eq!(damerau_levenshtein(&a, &b), strsim::osa_distance(&a, &b));
        }
    }
}
