//! Resolving a review task: link the record to a candidate, keep it apart from every
//! candidate, or merge its person into one; the task records what was decided.

use crate::error::{Error, Result};
use crate::store::{Euid, LinkMethod, Plan, ResolutionAction, Store, TaskId};

use super::types::TaskView;
use super::{stamp, Service};

impl Service {
    /// Resolves an open review task as `action` says (a merged candidate stands for its
    /// survivor). Returns the task and the record's person afterwards.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for [`ResolutionAction::Superseded`] (the system's, never
    /// requested) or an EUID that is not a candidate of the task; [`Error::NotFound`];
    /// [`Error::Conflict`] when the task is already resolved or the action conflicts with
    /// current state.
    #[tracing::instrument(skip_all, fields(task = %id))]
    pub async fn resolve_task(
        &self,
        id: TaskId,
        action: &ResolutionAction,
        actor: &str,
        reason: &str,
    ) -> Result<(TaskView, Euid)> {
        if *action == ResolutionAction::Superseded {
            return Err(Error::invalid(
                "action",
                "SUPERSEDED is set by the system, not requested",
            ));
        }
        let stamp = stamp::checked(actor, reason)?;
        let euid = self
            .write(stamp, |plan| self.plan_resolution(plan, id, action))
            .await?;
        tracing::info!(record_euid = %euid, "review task resolved");
        Ok((self.get_task(id)?, euid))
    }

    /// Plans the resolution of task `id`; returns the record's person afterwards.
    fn plan_resolution(
        &self,
        plan: &mut Plan<'_, dyn Store>,
        id: TaskId,
        action: &ResolutionAction,
    ) -> Result<Euid> {
        let task = plan.task_to_resolve(id)?;
        let own = plan
            .record(&task.record)?
            .map(|r| r.euid.clone())
            .ok_or_else(|| {
                Error::Conflict(format!("record {} is no longer stored", task.record))
            })?;
        let mut candidates = Vec::with_capacity(task.candidates.len());
        for c in &task.candidates {
            candidates.push(plan.survivor_of(&c.euid)?);
        }
        match action {
            ResolutionAction::Link { euid } => {
                let target = chosen(plan, &candidates, euid)?;
                plan.move_record(&task.record, &target, LinkMethod::Registrar)?;
                plan.resolve_task(id, ResolutionAction::Link { euid: target })?;
            }
            ResolutionAction::Merge { into } => {
                let target = chosen(plan, &candidates, into)?;
                plan.merge_persons(&own, &target)?;
                plan.resolve_task(id, ResolutionAction::Merge { into: target })?;
            }
            ResolutionAction::KeepSeparate => {
                plan.resolve_task(id, ResolutionAction::KeepSeparate)?;
                self.keep_apart(plan, &own, candidates)?;
            }
            ResolutionAction::Superseded => {
                return Err(Error::invalid("action", "not a registrar's choice"));
            }
        }
        plan.record(&task.record)?
            .map(|r| r.euid.clone())
            .ok_or_else(|| Error::not_found("record", &task.record))
    }

    /// Asserts `own` is not a duplicate of each candidate still active that it is not
    /// already asserted apart from (a candidate retired since the task opened is no one to
    /// keep apart from).
    fn keep_apart(
        &self,
        plan: &mut Plan<'_, dyn Store>,
        own: &Euid,
        mut candidates: Vec<Euid>,
    ) -> Result<()> {
        candidates.sort();
        candidates.dedup();
        for c in candidates.iter().filter(|c| *c != own) {
            let active = plan.person(c)?.is_some_and(|p| p.is_active());
            if active && self.store.not_duplicate(own, c)?.is_none() {
                plan.assert_not_duplicate(own, c)?;
            }
        }
        Ok(())
    }
}

/// The survivor of `euid`, which must be one of the task's `candidates` (survivors).
fn chosen(plan: &mut Plan<'_, dyn Store>, candidates: &[Euid], euid: &Euid) -> Result<Euid> {
    let survivor = plan.survivor_of(euid)?;
    if candidates.contains(&survivor) {
        Ok(survivor)
    } else {
        Err(Error::invalid(
            "euid",
            "not a candidate of this review task",
        ))
    }
}
