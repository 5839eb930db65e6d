//! PostgreSQL actions: fencing a member and promoting a standby, in the
//! order SPEC §6a requires (fence, prove, catch up, promote).

use super::*;

impl RealActions {
    /// SPEC §6a in order: fence every other member (and prove it), let
    /// the standby catch up with an old primary fenced while it answered,
    /// check the standby's lag once more, then promote.
    pub(super) async fn promote(
        &self,
        execution: &str,
        step: &StepSpec,
        datastore: &Option<String>,
        to_zone: &Option<String>,
    ) -> Result<Note, ActionError> {
        let name = datastore.as_deref().unwrap_or(&step.entity);
        let (members, max_lag, catch_up) = crate::fence::pg_datastore(&self.topo, name)
            .ok_or_else(|| ActionError::Fatal(format!("`{name}` is not a postgres datastore")))?;
        let to = to_zone
            .as_deref()
            .or(step.to_zone.as_deref())
            .ok_or_else(|| ActionError::Fatal("no zone to promote in".into()))?;
        let target = members
            .iter()
            .find(|m| m.zone == to)
            .ok_or_else(|| ActionError::Fatal(format!("`{name}` has no member in {to}")))?;
        let who = crate::fence::Asker { datastore: name, execution, step: &step.id };
        let mut notes = Vec::new();
        // The old primary's last WAL, when it was fenced while it answered.
        let mut catch_up_to: Option<Option<drctl_providers::postgres::Lsn>> = None;
        for m in members.iter().filter(|m| m.zone != to) {
            let unfenced = self.overrides.unfenced(name, &m.zone);
            let outcome = crate::fence::fence_member(m, &who, unfenced).await.map_err(|why| {
                ActionError::Fatal(format!(
                    "not promoting {name} in {to}: {why}. Nothing was promoted; members fenced so far stay fenced. Fence it, or promote beside it with `{}`",
                    crate::overrides::unfenced_flag(name, &m.zone)
                ))
            })?;
            match &outcome {
                crate::fence::Outcome::Answered(drctl_providers::postgres::Fenced::Closed { final_lsn, .. }) => {
                    catch_up_to = Some(Some(
                        catch_up_to.flatten().map_or(*final_lsn, |l: drctl_providers::postgres::Lsn| l.max(*final_lsn)),
                    ));
                }
                crate::fence::Outcome::Answered(drctl_providers::postgres::Fenced::Already)
                    if catch_up_to.is_none() =>
                {
                    catch_up_to = Some(None)
                }
                _ => {}
            }
            tracing::info!(execution, datastore = name, zone = %m.zone, outcome = %outcome.describe(&m.zone), "fence");
            notes.push(outcome.describe(&m.zone));
        }
        // An earlier attempt already promoted it (a crash, or a lost answer,
        // between the promote and the journal): the others are fenced
        // again above; there is nothing to catch up and nothing to promote.
        if drctl_providers::postgres::is_open_primary(&target.url, Duration::from_secs(5)).await {
            self.state.set_placement(name, to).map_err(state_error)?;
            notes.push(format!("{to}: already the primary (promoted by an earlier attempt)"));
            return Ok(Some(notes.join("; ")));
        }
        match catch_up_to {
            Some(lsn) => match crate::fence::catch_up(target, lsn, catch_up).await {
                Ok(n) => notes.push(n),
                Err(e) if self.overrides.skip_catch_up => notes.push(format!("NOT CAUGHT UP ({e}; --skip-catch-up)")),
                Err(e) => {
                    return Err(ActionError::Fatal(format!(
                        "{e}; not promoting (writes the old primary acknowledged would be lost): the old primary stays fenced, `--skip-catch-up` promotes anyway"
                    )))
                }
            },
            // No old primary answered: the last recorded lag, aged, is all there is.
            None => {
                if let Some(max) = max_lag {
                    let lag = crate::failover::recorded_lag(&*self.state, name, to, self.clock.now()).map_err(state_error)?;
                    let over = match lag {
                        Some((l, _)) => l > max.as_secs_f64(),
                        None => true,
                    };
                    let how = lag.map_or("unknown (no sample recorded)".to_string(), |(l, how)| format!("{l:.1}s ({how})"));
                    if over && !self.overrides.accept_lag {
                        return Err(ActionError::Fatal(format!(
                            "the standby in {to} is behind by {how}, over max_lag {}s, checked again just before the promote; not promoting (the old primary stays fenced): --accept-lag to promote anyway",
                            max.as_secs_f64()
                        )));
                    }
                    notes.push(format!("lag of the standby in {to}: {how}{}", if over { " (over max_lag; --accept-lag)" } else { "" }));
                }
            }
        }
        let what = drctl_providers::postgres::promote(&target.url, step.timeout.unwrap_or(Duration::from_secs(60)))
            .await
            .map_err(provider_error)?;
        self.state.set_placement(name, to).map_err(state_error)?;
        notes.push(format!("{to}: {what}"));
        Ok(Some(notes.join("; ")))
    }

    /// `postgres.fence`: one member, through the fence ladder, proven.
    pub(super) async fn fence(
        &self,
        execution: &str,
        step: &StepSpec,
        datastore: Option<String>,
        zone: Option<String>,
    ) -> Result<Note, ActionError> {
        let name = datastore.as_deref().unwrap_or(&step.entity);
        let (members, _, _) = crate::fence::pg_datastore(&self.topo, name)
            .ok_or_else(|| ActionError::Fatal(format!("`{name}` is not a postgres datastore")))?;
        let zone = zone.as_deref().or(step.from_zone.as_deref());
        let m = members
            .iter()
            .find(|m| Some(m.zone.as_str()) == zone)
            .or(members.first())
            .ok_or_else(|| ActionError::Fatal("no member".into()))?;
        let who = crate::fence::Asker { datastore: name, execution, step: &step.id };
        crate::fence::fence_member(m, &who, self.overrides.unfenced(name, &m.zone))
            .await
            .map(|o| Some(o.describe(&m.zone)))
            .map_err(ActionError::Fatal)
    }
}
