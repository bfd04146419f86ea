//! Comparators: pure, infallible functions saying how alike two normalised values are.
//!
//! Inputs arrive normalised by the caller (lowercase ASCII names, canonical identifiers);
//! nothing here validates, logs or fails, and the hot paths do not allocate.
//!
//! | module | comparators |
//! |---|---|
//! | [`string`] | [`jaro_winkler`] similarity, [`levenshtein`] and [`damerau_levenshtein`] (OSA) distances |
//! | [`phonetic`] | [`soundex`], [`double_metaphone`], [`nysiis`] codes (allocate: compute once per record) |
//! | [`nickname`] | [`NicknameTable`]: nickname groups from `data/nicknames.csv` (Bob ~ Robert) |
//! | [`date`] | [`compare_dates`] → [`DateAgreement`]: exact, swapped, digit slip, month/year off, partial |
//! | [`identifier`] | [`compare_identifiers`] → [`IdAgreement`]: exact, one substitution, one transposition |

pub mod date;
pub mod identifier;
pub mod nickname;
pub mod phonetic;
pub mod string;

pub use date::{compare_dates, DateAgreement};
pub use identifier::{compare_identifiers, IdAgreement};
pub use nickname::NicknameTable;
pub use phonetic::{double_metaphone, nysiis, soundex};
pub use string::{damerau_levenshtein, jaro_winkler, levenshtein};
