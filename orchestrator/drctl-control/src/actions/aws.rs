//! AWS actions: RDS read replicas and clusters, S3 buckets, Route53 records.

use super::*;

impl RealActions {
    /// `rds.promote_read_replica`: `max_lag` checked once more, then the promote.
    pub(super) async fn rds_promote_read_replica(
        &self,
        step: &StepSpec,
        datastore: Option<String>,
        to_zone: Option<String>,
    ) -> Result<Note, ActionError> {
        let (name, ds) = self.datastore(&datastore, step)?;
        let to = Self::to_zone(&to_zone, step)?;
        let instance = ds
            .replicas
            .iter()
            .find(|m| self.topo.zones[m.zone].name == to)
            .and_then(|m| match &m.location {
                Location::RdsInstance { instance } => Some(instance.clone()),
                _ => None,
            })
            .ok_or_else(|| ActionError::Fatal(format!("{name} has no replica instance in {to}")))?;
        // `max_lag` once more, just before the promote (after any approval wait).
        let max_lag = self.topo.entity(self.topo.entity_id(name).unwrap_or_default()).failover.max_lag;
        if let Some(max) = max_lag {
            let (ok, lag) = crate::preflight::rds_lag(
                &self.clients,
                ds.region.as_deref(),
                &instance,
                max,
                self.overrides.accept_lag,
            )
            .await;
            if !ok {
                return Err(ActionError::Fatal(format!("{lag}; not promoting")));
            }
        }
        let client = drctl_aws::rds::Rds::new(self.clients.sdk().await, ds.region.as_deref());
        let what =
            drctl_aws::rds::promote_read_replica(&client, &instance, Self::wait_for(step)).await.map_err(aws_error)?;
        self.state.set_placement(name, to).map_err(state_error)?;
        Ok(Some(what))
    }

    /// `rds.failover_db_cluster`: the writer moves to a member outside the lost zones.
    pub(super) async fn rds_failover_db_cluster(
        &self,
        step: &StepSpec,
        datastore: Option<String>,
        to_zone: Option<String>,
    ) -> Result<Note, ActionError> {
        let (name, ds) = self.datastore(&datastore, step)?;
        let cluster = ds.cluster.clone().ok_or_else(|| ActionError::Fatal(format!("{name} has no cluster")))?;
        let client = drctl_aws::rds::Rds::new(self.clients.sdk().await, ds.region.as_deref());
        let zones = crate::live::zone_map(&self.topo);
        let members = drctl_aws::rds::cluster_members(&client, &cluster, &zones).await.map_err(aws_error)?;
        let writer = members.iter().find(|(_, w, _)| *w).map(|(i, _, z)| (i.id.clone(), z.clone()));
        // A targeted cluster moves off its writer; on a zone loss it
        // moves only when the writer is in a lost zone.
        let targeted = self.targets.iter().any(|t| t == name);
        if let Some((id, zone)) = &writer {
            if !targeted && !self.lost_zones.contains(zone) {
                self.state.set_placement(name, zone).map_err(state_error)?;
                return Ok(Some(format!("{id} in {zone} already writes, outside the lost zones")));
            }
        }
        let wanted = to_zone.as_deref().or(step.to_zone.as_deref());
        let candidates: Vec<_> = members
            .iter()
            .filter(|(i, _, z)| !self.lost_zones.contains(z) && writer.as_ref().is_none_or(|(w, _)| *w != i.id))
            .collect();
        let target = candidates
            .iter()
            .find(|(_, _, z)| wanted.is_none_or(|w| w == z))
            .or(candidates.first())
            .ok_or_else(|| ActionError::Fatal(format!("{cluster} has no other member outside the lost zones")))?;
        let what = drctl_aws::rds::failover_cluster(&client, &cluster, &target.0.id, &zones, Self::wait_for(step))
            .await
            .map_err(aws_error)?;
        self.state.set_placement(name, &target.2).map_err(state_error)?;
        Ok(Some(what))
    }

    /// `s3.promote_replica`: the bucket in the target zone becomes the primary; native replication is turned around.
    pub(super) async fn s3_promote_replica(
        &self,
        step: &StepSpec,
        datastore: Option<String>,
        to_zone: Option<String>,
    ) -> Result<Note, ActionError> {
        let (name, ds) = self.datastore(&datastore, step)?;
        let to = Self::to_zone(&to_zone, step)?;
        // Any bucket of the datastore but the current primary's: after a
        // failover, failing back promotes the topology's own primary bucket.
        if !ds.primary.iter().chain(&ds.replicas).any(|m| self.topo.zones[m.zone].name == to) {
            return Err(ActionError::Fatal(format!("{name} has no bucket in {to}")));
        }
        let native = ds.replication.as_ref().is_some_and(|r| r.by == drctl_core::topology::ReplicationBy::S3);
        let note = if native {
            // S3 replicates by itself: turn its rules around, verified.
            let all = crate::live::buckets(&self.clients, &self.topo, ds).await;
            let (new, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|b| b.zone == to);
            let new = new.first().ok_or_else(|| ActionError::Fatal(format!("{name} has no bucket in {to}")))?;
            drctl_aws::s3::turn_native_replication(new, &others).await.map_err(aws_error)?
        } else {
            "replication copies from it".to_string()
        };
        self.state.set_placement(name, to).map_err(state_error)?;
        Ok(Some(format!("the bucket in {to} is now the primary; {note}")))
    }

    /// `route53.upsert`: one record set, then INSYNC.
    pub(super) async fn route53_upsert(
        &self,
        step: &StepSpec,
        zone_id: String,
        name: String,
        values: Vec<String>,
        record_type: String,
        ttl: i64,
    ) -> Result<Note, ActionError> {
        let client = drctl_aws::route53::client(self.clients.sdk().await);
        let wait = Self::wait_for(step);
        drctl_aws::route53::upsert(&client, &zone_id, &name, &record_type, ttl, &values, wait)
            .await
            .map(Some)
            .map_err(aws_error)
    }
}
