//! Faults in and out: through the lab's control API, or, without a lab,
//! the one fault that needs none (pausing PostgreSQL's WAL replay by SQL).

use super::*;

/// Without a lab, only a PostgreSQL replication pause can be injected (by SQL on the standbys).
pub(super) fn no_lab_hits(topo: &Topology, f: &FaultRequest) -> Result<Vec<String>, Error> {
    match f {
        FaultRequest::ReplicationPause { datastore } => {
            let id = topo
                .entity_id(datastore)
                .ok_or_else(|| Error::BadInput(format!("`{datastore}` is not in the topology")))?;
            match &topo.entity(id).spec {
                EntitySpec::Datastore(d) if d.kind == drctl_core::topology::DatastoreKind::Postgres => Ok(d
                    .replicas
                    .iter()
                    .map(|r| format!("{datastore} standby in {}: WAL replay paused", topo.zones[r.zone].name))
                    .collect()),
                _ => Err(Error::BadInput(format!(
                    "replication-pause outside the lab works on postgres datastores only; `{datastore}` is not one"
                ))),
            }
        }
        other => Err(Error::BadInput(format!(
            "a `{}` fault needs the lab's fault proxies: run the drill with --lab, or on a topology written by `drctl lab up`",
            kind_of(other)
        ))),
    }
}

async fn pg_replay(topo: &Topology, datastore: &str, pause: bool) -> Result<(), Error> {
    let id = topo.entity_id(datastore).ok_or_else(|| Error::BadInput(format!("no datastore {datastore}")))?;
    let EntitySpec::Datastore(d) = &topo.entity(id).spec else { return Ok(()) };
    for r in &d.replicas {
        if let Location::Postgres { url, .. } = &r.location {
            let c = drctl_providers::postgres::connect(url, Duration::from_secs(5))
                .await
                .map_err(|e| Error::Inject(e.to_string()))?;
            let sql = if pause { "SELECT pg_wal_replay_pause()" } else { "SELECT pg_wal_replay_resume()" };
            c.batch_execute(sql).await.map_err(|e| Error::Inject(format!("{}: {e}", drctl_providers::redact(url))))?;
        }
    }
    Ok(())
}

pub(super) struct Injector<'a> {
    pub(super) lab: Option<&'a LabClient>,
    pub(super) topo: &'a Topology,
}

impl Injector<'_> {
    pub(super) async fn inject(&self, f: &FaultRequest) -> Result<(Option<u64>, Vec<String>), Error> {
        match self.lab {
            Some(lab) => {
                let r = lab.inject(f, false).await?;
                Ok((Some(r.id), r.hits))
            }
            None => {
                let hits = no_lab_hits(self.topo, f)?;
                if let FaultRequest::ReplicationPause { datastore } = f {
                    pg_replay(self.topo, datastore, true).await?;
                }
                Ok((None, hits))
            }
        }
    }

    pub(super) async fn heal(&self, id: Option<u64>, f: &FaultRequest) -> Result<Vec<String>, Error> {
        match (self.lab, id) {
            (Some(lab), Some(id)) => Ok(lab.heal(id).await?),
            (None, _) => {
                if let FaultRequest::ReplicationPause { datastore } = f {
                    pg_replay(self.topo, datastore, false).await?;
                }
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }
}
