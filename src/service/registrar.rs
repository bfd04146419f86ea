//! Registrar actions: remove, link, unlink, merge, split and not-duplicate. Each builds
//! one plan from fresh reads and applies it, and builds it again when what it read went
//! stale before it applied.

#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::record::RecordKey;
use crate::store::{Euid, LinkMethod, Moved, Removed};

use super::types::{Merged, Split};
use super::{stamp, Service};

impl Service {
    /// Deletes a record (the source retracted it); its person retires if left empty and its
    /// open review tasks are superseded.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad actor/reason/key; [`Error::NotFound`].
    #[tracing::instrument(skip_all, fields(record = %key))]
    pub async fn remove_record(
        &self,
        key: &RecordKey,
        actor: &str,
        reason: &str,
    ) -> Result<Removed> {
        let stamp = stamp::checked(actor, reason)?;
        let removed = self.write(stamp, |plan| plan.remove_record(key)).await?;
        tracing::info!(euid = %removed.euid, retired = removed.retired, "record removed");
        Ok(removed)
    }

    /// Moves a record to a person (a merged EUID stands for its survivor).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown record or person; [`Error::Conflict`] when the
    /// person is retired.
    #[tracing::instrument(skip_all, fields(record = %key, euid = %euid))]
    pub async fn link(
        &self,
        key: &RecordKey,
        euid: &Euid,
        actor: &str,
        reason: &str,
    ) -> Result<Moved> {
        let stamp = stamp::checked(actor, reason)?;
        let moved = self
            .write(stamp, |plan| {
                plan.move_record(key, euid, LinkMethod::Registrar)
            })
            .await?;
        tracing::info!(from = %moved.from, to = %moved.to, "record linked by registrar");
        Ok(moved)
    }

    /// Moves a record out of its person into a new person.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when it is its person's only record.
    #[tracing::instrument(skip_all, fields(record = %key))]
    pub async fn unlink(&self, key: &RecordKey, actor: &str, reason: &str) -> Result<Moved> {
        let stamp = stamp::checked(actor, reason)?;
        let moved = self.write(stamp, |plan| plan.unlink_record(key)).await?;
        tracing::info!(from = %moved.from, to = %moved.to, "record unlinked");
        Ok(moved)
    }

    /// Folds person `from` into `into`; `from` stays resolvable as an alias.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] for the same person, a retired one, or two
    /// persons asserted not to be duplicates.
    #[tracing::instrument(skip_all, fields(from = %from, into = %into))]
    pub async fn merge_persons(
        &self,
        from: &Euid,
        into: &Euid,
        actor: &str,
        reason: &str,
    ) -> Result<Merged> {
        let stamp = stamp::checked(actor, reason)?;
        let merged = self
            .write(stamp, |plan| {
                let survivor = plan.active_person(into)?;
                let moved = plan.merge_persons(from, into)?;
                Ok(Merged {
                    survivor,
                    records_moved: moved.len(),
                })
            })
            .await?;
        tracing::info!(survivor = %merged.survivor, moved = merged.records_moved, "persons merged");
        Ok(merged)
    }

    /// Moves `keys` out of person `euid` into a new person (unmerge).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty or repeated list; [`Error::NotFound`];
    /// [`Error::Conflict`] when a key is not a member or no record would stay.
    #[tracing::instrument(skip_all, fields(euid = %euid, records = keys.len()))]
    pub async fn split_person(
        &self,
        euid: &Euid,
        keys: &[RecordKey],
        actor: &str,
        reason: &str,
    ) -> Result<Split> {
        let stamp = stamp::checked(actor, reason)?;
        let split = self
            .write(stamp, |plan| {
                let euid = plan.active_person(euid)?;
                let new_euid = plan.split_person(&euid, keys)?;
                Ok(Split { euid, new_euid })
            })
            .await?;
        tracing::info!(new_euid = %split.new_euid, "person split");
        Ok(split)
    }

    /// Asserts two persons are different people; automatic matching respects it.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when both are the same person.
    #[tracing::instrument(skip_all, fields(a = %a, b = %b))]
    pub async fn mark_not_duplicate(
        &self,
        a: &Euid,
        b: &Euid,
        actor: &str,
        reason: &str,
    ) -> Result<()> {
        let stamp = stamp::checked(actor, reason)?;
        self.write(stamp, |plan| plan.assert_not_duplicate(a, b))
            .await?;
        tracing::info!("not-duplicate asserted");
        Ok(())
    }
}
