//! The stamp of a registrar action (who, why, when), checked before anything is planned:
//! the actor and reason are free text a client sends, kept in history.

use crate::error::{Error, Result};
use crate::store::Stamp;

/// Longest accepted `actor`, in bytes.
pub const MAX_ACTOR_LEN: usize = 128;
/// Longest accepted `reason`, in bytes.
pub const MAX_REASON_LEN: usize = 1024;

/// Checks `actor` and `reason` and stamps them with the time now.
///
/// # Errors
/// [`Error::InvalidInput`] naming `actor` (missing, too long, control characters) or
/// `reason` (too long, control characters).
pub fn checked(actor: &str, reason: &str) -> Result<Stamp> {
    if actor.trim().is_empty() {
        return Err(Error::invalid("actor", "missing"));
    }
    check_text("actor", actor, MAX_ACTOR_LEN)?;
    check_text("reason", reason, MAX_REASON_LEN)?;
    Ok(Stamp::now(actor, reason))
}

/// Refuses text longer than `max` bytes or with control characters (tabs and newlines are
/// fine), naming `field` and never quoting the text.
pub(super) fn check_text(field: &'static str, v: &str, max: usize) -> Result<()> {
    if v.len() > max {
        return Err(Error::invalid(field, format!("longer than {max} bytes")));
    }
    if v.chars().any(|c| c.is_control() && c != '\t' && c != '\n') {
        return Err(Error::invalid(field, "contains control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_not_the_text() {
        assert!(checked("registrar-7", "same MRN").is_ok());
        let e = checked(" ", "").unwrap_err().to_string();
        assert!(e.contains("actor") && e.contains("missing"), "{e}");
        let e = checked("a", &"x".repeat(2000)).unwrap_err().to_string();
        assert!(e.contains("reason") && !e.contains("xxx"), "{e}");
        let e = checked("a\u{7}", "").unwrap_err().to_string();
        assert!(e.contains("actor"), "{e}");
    }
}
