//! Faults in and out: through the lab's control API, or, without a lab,
//! the one fault that needs none: cutting a PostgreSQL standby off from
//! its primary by SQL (its `primary_conninfo` emptied, so its WAL receiver
//! stops and what it lacks, the RPO, grows), put back as it was on heal.

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
                    .map(|r| format!("{datastore} standby in {}: replication from the primary stopped", topo.zones[r.zone].name))
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

/// A standby cut off from its primary: its URL, and the `primary_conninfo`
/// to put back (`None`: remove the override).
type CutStandby = (String, Option<String>);

/// Stops each standby's WAL receiver: empties `primary_conninfo` (a reload
/// ends the receiver). Returns, per standby, what to put back on heal: the
/// value `ALTER SYSTEM` held, or `None` when it came from
/// `postgresql.conf` (the override is then removed).
async fn cut_replication(topo: &Topology, datastore: &str) -> Result<Vec<CutStandby>, Error> {
    let id = topo.entity_id(datastore).ok_or_else(|| Error::BadInput(format!("no datastore {datastore}")))?;
    let EntitySpec::Datastore(d) = &topo.entity(id).spec else { return Ok(Vec::new()) };
    let mut cut = Vec::new();
    for r in &d.replicas {
        let Location::Postgres { url, .. } = &r.location else { continue };
        let c = session(url).await?;
        let row = c
            .query_one("SELECT setting, coalesce(sourcefile, '') FROM pg_settings WHERE name = 'primary_conninfo'", &[])
            .await
            .map_err(|e| sql_error(url, e))?;
        let (setting, source): (String, String) = (row.get(0), row.get(1));
        if setting.is_empty() {
            continue; // already cut off
        }
        let keep = source.ends_with("postgresql.auto.conf").then_some(setting);
        // One statement per call: ALTER SYSTEM refuses a transaction block.
        for sql in ["ALTER SYSTEM SET primary_conninfo = ''", "SELECT pg_reload_conf()"] {
            c.batch_execute(sql).await.map_err(|e| sql_error(url, e))?;
        }
        cut.push((url.clone(), keep));
    }
    Ok(cut)
}

/// Puts back what [`cut_replication`] took away: the standbys stream again.
async fn restore_replication(cut: &[CutStandby]) -> Result<(), Error> {
    for (url, keep) in cut {
        let c = session(url).await?;
        let set = match keep {
            Some(v) => format!("ALTER SYSTEM SET primary_conninfo = {}", quote(v)),
            None => "ALTER SYSTEM RESET primary_conninfo".to_string(),
        };
        for sql in [set.as_str(), "SELECT pg_reload_conf()"] {
            c.batch_execute(sql).await.map_err(|e| sql_error(url, e))?;
        }
    }
    Ok(())
}

async fn session(url: &str) -> Result<tokio_postgres::Client, Error> {
    drctl_providers::postgres::connect(url, Duration::from_secs(5)).await.map_err(|e| Error::Inject(e.to_string()))
}

fn sql_error(url: &str, e: tokio_postgres::Error) -> Error {
    let why = e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string());
    Error::Inject(format!("{}: {why}", drctl_providers::redact(url)))
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(super) struct Injector<'a> {
    pub(super) lab: Option<&'a LabClient>,
    pub(super) topo: &'a Topology,
    /// Outside the lab: the standbys cut off, per datastore, and what each
    /// had, to put back on heal.
    pub(super) cut: std::sync::Mutex<Vec<(String, Vec<CutStandby>)>>,
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
                    let cut = cut_replication(self.topo, datastore).await?;
                    self.cut.lock().unwrap_or_else(|p| p.into_inner()).push((datastore.clone(), cut));
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
                    let cut: Vec<_> = {
                        let mut all = self.cut.lock().unwrap_or_else(|p| p.into_inner());
                        let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|(d, _)| d == datastore);
                        *all = rest;
                        mine.into_iter().flat_map(|(_, c)| c).collect()
                    };
                    restore_replication(&cut).await?;
                }
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }
}
