//! Character-level differences between two values, for the side-by-side view: the longest
//! common subsequence of their characters, so each side's characters outside it are the
//! ones to highlight.

/// A run of characters of one side: the text, and whether it differs from the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The characters.
    pub text: String,
    /// True when these characters are not in the other side.
    pub differs: bool,
}

/// Values longer than this (in characters) are compared whole: the table would be large
/// and a registrar reads such a value whole anyway.
const MAX_CHARS: usize = 256;

/// The runs of `a` and of `b`: characters in a longest common subsequence are the same,
/// the rest differ. Case counts as a difference: a registrar sees what is stored.
pub fn runs(a: &str, b: &str) -> (Vec<Run>, Vec<Run>) {
    let (x, y): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if x.len() > MAX_CHARS || y.len() > MAX_CHARS {
        let same = a == b;
        return (whole(a, !same), whole(b, !same));
    }
    // lcs[i][j]: length of a longest common subsequence of x[i..] and y[j..].
    let w = y.len() + 1;
    let mut lcs = vec![0u16; (x.len() + 1) * w];
    for i in (0..x.len()).rev() {
        for j in (0..y.len()).rev() {
            lcs[i * w + j] = if x[i] == y[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut ka, mut kb) = (vec![false; x.len()], vec![false; y.len()]);
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i] == y[j] {
            ka[i] = true;
            kb[j] = true;
            i += 1;
            j += 1;
        } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    (group(&x, &ka), group(&y, &kb))
}

fn whole(s: &str, differs: bool) -> Vec<Run> {
    if s.is_empty() {
        return Vec::new();
    }
    vec![Run {
        text: s.to_string(),
        differs,
    }]
}

fn group(chars: &[char], kept: &[bool]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (c, k) in chars.iter().zip(kept) {
        match out.last_mut() {
            Some(r) if r.differs != *k => r.text.push(*c),
            _ => out.push(Run {
                text: c.to_string(),
                differs: !k,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(runs: &[Run]) -> String {
        runs.iter()
            .map(|r| {
                if r.differs {
                    format!("[{}]", r.text)
                } else {
                    r.text.clone()
                }
            })
            .collect()
    }

    #[test]
    fn highlights_only_the_characters_that_differ() {
        let (a, b) = runs("Quillfeather", "Quilfeather");
        assert_eq!(
            (show(&a), show(&b)),
            ("Quil[l]feather".into(), "Quilfeather".into())
        );
        let (a, b) = runs("1958-03-17", "1958-03-18");
        assert_eq!(
            (show(&a), show(&b)),
            ("1958-03-1[7]".into(), "1958-03-1[8]".into())
        );
        let (a, b) = runs("same", "same");
        assert!(a.iter().chain(&b).all(|r| !r.differs));
        let (a, b) = runs("", "x");
        assert_eq!((show(&a), show(&b)), (String::new(), "[x]".into()));
        let long = "y".repeat(300);
        let (a, _) = runs(&long, "y");
        assert_eq!(a.len(), 1);
        assert!(a[0].differs);
    }
}
