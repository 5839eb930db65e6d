//! `drctl restore DATASTORE --to TIME --replace` for an `rds-instance`:
//! the instance restored to the point put in the primary's place under
//! the primary's own identifier, so clients keep the endpoint name they
//! use (the way AWS advises for a point-in-time restore: RDS restores only
//! into a new instance, and an endpoint name follows the identifier).
//!
//! The steps, each journaled and each looking at the world before it acts
//! (which identifiers exist, in which state), so a resume after a crash at
//! any point neither restores nor renames twice:
//!
//! 1. `DS/restore`: `RestoreDBInstanceToPointInTime` into a new instance
//!    `SOURCE-restored-STAMP`, waited for until available (the same step
//!    as a restore beside the datastore, [`crate::cloud`]);
//! 2. `DS/erasures`: the erasure requests made since the point replayed on
//!    it. When it cannot be reached from here the step fails, and the run
//!    pauses before anything is switched: the commander replays by hand
//!    and records it with `drctl approve ID DS/erasures --done`;
//! 3. `DS/fence`: the old primary renamed `SOURCE-replaced-STAMP`, which
//!    takes its endpoint name away from clients, then stopped so it takes
//!    no write at its new name (RDS does not stop an instance that has
//!    read replicas: that one is left running, and the output says so);
//! 4. `DS/switch`: the restored instance renamed `SOURCE`: it serves at
//!    the old endpoint name;
//! 5. `DS/replicas`: each read replica the topology lists renamed aside
//!    (`REPLICA-replaced-STAMP`) and made again under its own name as a
//!    read replica of the new primary, in its zone and class.
//!
//! The old primary and the old replicas are kept, at their `-replaced-`
//! names, for forensics; deleting them is the commander's call.
//!
//! An `rds-cluster` is replaced the same way, a cluster's endpoint names
//! following its identifier as an instance's do. A restored Aurora cluster
//! has no instance to serve from, so one step more, `DS/instances`, adds
//! one per member of the old cluster (its class, the cluster's engine; the
//! first made is the writer) and waits for them before the erasures. The
//! fence renames the old cluster aside and stops it (its instances keep
//! endpoints of their own, which must take no writes either); there are
//! no read replicas to make again.

use crate::restore::{Proposal, Request};
use crate::Error;
use drctl_aws::rds::Rds;
use drctl_aws::rds_replace::{self as calls, Instance};
use drctl_control::failover::Check;
use drctl_control::live::Clients;
use drctl_core::topology::{DatastoreKind, Location};
use drctl_core::Topology;
use drctl_engine::{ActionError, Note};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// The actions a `--replace` of an `rds-instance` adds to its restore.
pub const ERASURES: &str = "rds.replay_erasures";
pub const FENCE: &str = "rds.rename_aside";
pub const SWITCH: &str = "rds.take_name";
pub const REPLICAS: &str = "rds.rebuild_replicas";
pub const INSTANCES: &str = "rds.add_cluster_instances";

/// How long one rename, stop or new replica is waited for.
const WAIT: Duration = Duration::from_secs(3600);

/// The identifiers a replace moves instances to, decided once and journaled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdsReplace {
    /// The primary's identifier: the name the restored instance takes.
    pub source: String,
    /// Where the old primary goes (`SOURCE-replaced-STAMP`).
    pub aside: String,
    pub replicas: Vec<Replica>,
    /// For an `rds-cluster`: the instances added to the restored cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<NewInstance>,
}

/// An instance added to a restored cluster, like a member of the old one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInstance {
    pub id: String,
    pub class: String,
    pub engine: String,
}

/// A read replica the topology lists, made again from the new primary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    pub zone: String,
    pub id: String,
    /// Where the old replica goes (`ID-replaced-STAMP`).
    pub aside: String,
}

/// The RDS client of a datastore, in its region.
pub(crate) async fn client(topo: &Topology, clients: &Clients, datastore: &str) -> Result<Rds, String> {
    let ds = crate::cloud::rds_of(topo, datastore).ok_or_else(|| format!("no RDS datastore `{datastore}`"))?;
    let region = ds.region.clone().or_else(|| ds.primary.as_ref().map(|p| topo.zones[p.zone].region.clone()));
    Ok(Rds::new(clients.sdk().await, region.as_deref()))
}

/// Plans the replace and runs every check that can refuse it (the primary
/// is there and available, the names it will use are free, each listed
/// replica is a replica of the primary). Changes nothing; a refused
/// proposal ([`Proposal::refused`]) says why in its `checks`.
pub async fn propose(
    topo: &Topology,
    clients: &Clients,
    datastore: &str,
    to: &str,
    into: Option<&str>,
    now: SystemTime,
) -> Result<Proposal, Error> {
    let ds = crate::cloud::rds_of(topo, datastore)
        .ok_or_else(|| Error::NotBackedUp(format!("no RDS datastore `{datastore}`")))?;
    if ds.kind == DatastoreKind::RdsCluster {
        return propose_cluster(topo, clients, datastore, to, into, now).await;
    }
    let mut request = crate::cloud::rds_request(topo, datastore, to, into, now)?;
    let source = crate::cloud::rds_source(ds).unwrap_or_default();
    let stamp = chrono::DateTime::<chrono::Utc>::from(now).format("%Y%m%d%H%M%S").to_string();
    let aside_of = |id: &str| calls::identifier(id, &format!("replaced-{stamp}"));
    let replicas: Vec<Replica> = ds
        .replicas
        .iter()
        .filter_map(|m| match &m.location {
            Location::RdsInstance { instance } => {
                Some(Replica { zone: topo.zones[m.zone].name.clone(), id: instance.clone(), aside: aside_of(instance) })
            }
            _ => None,
        })
        .collect();
    let plan = RdsReplace { aside: aside_of(&source), source: source.clone(), replicas, instances: Vec::new() };
    let rds = client(topo, clients, datastore).await.map_err(Error::BadRequest)?;
    let look = |id: String| {
        let rds = &rds;
        async move {
            calls::instance(rds, &id).await.map_err(|e| Error::Tool {
                what: "checking the instances (nothing was changed)".into(),
                why: e.to_string(),
            })
        }
    };
    let check =
        |subject: &str, ok: bool, detail: String| Check { subject: format!("{datastore}/{subject}"), ok, detail };
    let mut checks = Vec::new();
    checks.push(match look(source.clone()).await? {
        Some(i) if i.status == "available" => check("fence", true, format!("the primary {source} is available")),
        Some(i) => check(
            "fence",
            false,
            format!("the primary {source} is {}, not available: restore beside it (drop --replace) or wait", i.status),
        ),
        None => check("fence", false, format!("RDS has no instance {source} (the datastore's primary)")),
    });
    if look(request.into.clone()).await?.is_some() {
        checks.push(check(
            "restore",
            false,
            format!("an instance {} exists already (an earlier restore to the same point?): give --into NAME for a new one, or delete it", request.into),
        ));
    }
    if look(plan.aside.clone()).await?.is_some() {
        checks.push(check(
            "fence",
            false,
            format!("an instance {} exists already: wait a second and ask again", plan.aside),
        ));
    }
    for r in &plan.replicas {
        checks.push(match look(r.id.clone()).await? {
            Some(i) if i.replica_of.as_deref() == Some(source.as_str()) => check(
                "replicas",
                true,
                format!(
                    "the read replica {} ({}) will be renamed {} and made again from the restored primary",
                    r.id, r.zone, r.aside
                ),
            ),
            Some(i) => check(
                "replicas",
                false,
                format!(
                    "{} is listed as a replica of {datastore} but RDS says it replicates {}: fix the topology",
                    r.id,
                    i.replica_of.as_deref().unwrap_or("nothing")
                ),
            ),
            None => check(
                "replicas",
                false,
                format!("RDS has no instance {} (a replica the topology lists): fix the topology", r.id),
            ),
        });
        if look(r.aside.clone()).await?.is_some() {
            checks.push(check(
                "replicas",
                false,
                format!("an instance {} exists already: wait a second and ask again", r.aside),
            ));
        }
    }
    request.replace = true;
    request.rds_replace = Some(plan);
    Ok(Proposal { id: crate::restore::new_id(now), request, earliest: None, backup_bytes: 0, rate: None, checks })
}

/// [`propose`] for an `rds-cluster`: the cluster is there and available
/// with at least one instance (whose class the new ones take), and the
/// names it will use are free.
async fn propose_cluster(
    topo: &Topology,
    clients: &Clients,
    datastore: &str,
    to: &str,
    into: Option<&str>,
    now: SystemTime,
) -> Result<Proposal, Error> {
    let ds = crate::cloud::rds_of(topo, datastore)
        .ok_or_else(|| Error::NotBackedUp(format!("no RDS datastore `{datastore}`")))?;
    let mut request = crate::cloud::rds_request(topo, datastore, to, into, now)?;
    let source = ds.cluster.clone().unwrap_or_default();
    let stamp = chrono::DateTime::<chrono::Utc>::from(now).format("%Y%m%d%H%M%S").to_string();
    let aside = calls::identifier(&source, &format!("replaced-{stamp}"));
    let rds = client(topo, clients, datastore).await.map_err(Error::BadRequest)?;
    let tool = |e: drctl_aws::Error| Error::Tool {
        what: "checking the clusters (nothing was changed)".into(),
        why: e.to_string(),
    };
    let check =
        |subject: &str, ok: bool, detail: String| Check { subject: format!("{datastore}/{subject}"), ok, detail };
    let mut checks = Vec::new();
    let mut instances = Vec::new();
    match calls::cluster(&rds, &source).await.map_err(tool)? {
        Some(c) if c.status == "available" => {
            checks.push(check("fence", true, format!("the cluster {source} is available")));
            let engine = c.engine.clone().unwrap_or_default();
            for (n, member) in c.members.iter().enumerate() {
                let class = calls::instance(&rds, member).await.map_err(tool)?.and_then(|i| i.class);
                instances.push(NewInstance {
                    id: calls::identifier(&request.into, &(n + 1).to_string()),
                    class: class.unwrap_or_default(),
                    engine: engine.clone(),
                });
            }
            if instances.is_empty() || instances.iter().any(|i| i.class.is_empty() || i.engine.is_empty()) {
                checks.push(check(
                    "instances",
                    false,
                    format!("the cluster {source} has no instance whose class and engine the restored cluster's can take: add one, or restore beside it (drop --replace)"),
                ));
            }
        }
        Some(c) => checks.push(check(
            "fence",
            false,
            format!("the cluster {source} is {}, not available: restore beside it (drop --replace) or wait", c.status),
        )),
        None => checks.push(check("fence", false, format!("RDS has no cluster {source} (the datastore's cluster)"))),
    }
    if calls::cluster(&rds, &request.into).await.map_err(tool)?.is_some() {
        checks.push(check(
            "restore",
            false,
            format!("a cluster {} exists already (an earlier restore to the same point?): give --into NAME for a new one, or delete it", request.into),
        ));
    }
    if calls::cluster(&rds, &aside).await.map_err(tool)?.is_some() {
        checks.push(check("fence", false, format!("a cluster {aside} exists already: wait a second and ask again")));
    }
    for i in &instances {
        if calls::instance(&rds, &i.id).await.map_err(tool)?.is_some() {
            checks.push(check(
                "instances",
                false,
                format!("an instance {} exists already: give --into NAME for a new cluster, or delete it", i.id),
            ));
        }
    }
    request.replace = true;
    request.rds_replace = Some(RdsReplace { source, aside, replicas: Vec::new(), instances });
    Ok(Proposal { id: crate::restore::new_id(now), request, earliest: None, backup_bytes: 0, rate: None, checks })
}

/// Whether the request replaces an Aurora cluster (not an instance).
pub fn is_cluster(r: &Request) -> bool {
    r.kind == "rds-cluster"
}

/// What a replace will do, one line per step.
pub fn describe(r: &Request) -> Vec<String> {
    let ds = &r.datastore;
    let Some(p) = &r.rds_replace else { return Vec::new() };
    if is_cluster(r) {
        let when = if r.to == "latest" { "its latest restorable time".to_string() } else { r.target.clone() };
        let made: Vec<String> = p.instances.iter().map(|i| format!("{} ({})", i.id, i.class)).collect();
        return vec![
            format!("{ds}/restore: restore the cluster {} as it was at {when} into a new cluster {} and wait until it is available", p.source, r.into),
            format!("{ds}/instances: add {} to {} (the first is the writer) and wait until they are available", made.join(", "), r.into),
            format!(
                "{ds}/erasures: replay the erasure requests made since the point on {}; if there are any the run pauses before anything is switched (replay them by hand, then `drctl approve ID {ds}/erasures --done`)",
                r.into
            ),
            format!("{ds}/fence: rename the old cluster {} to {} (clients lose its endpoint names) and stop it (its instances take no write at their own endpoints)", p.source, p.aside),
            format!("{ds}/switch: rename {} to {}: the restored cluster serves at the old endpoint names", r.into, p.source),
        ];
    }
    let when = if r.to == "latest" { "its latest restorable time".to_string() } else { r.target.clone() };
    let mut lines = vec![
        format!("{ds}/restore: restore {} as it was at {when} into a new instance {} and wait until it is available", p.source, r.into),
        format!(
            "{ds}/erasures: replay the erasure requests made since the point on {}; if it cannot be reached from here the run pauses before anything is switched (replay them by hand, then `drctl approve ID {ds}/erasures --done`)",
            r.into
        ),
        format!(
            "{ds}/fence: rename the old primary {} to {} (clients lose its endpoint name) and stop it (RDS does not stop one with read replicas: it is then left running at its new name)",
            p.source, p.aside
        ),
        format!("{ds}/switch: rename {} to {}: the restored instance serves at the old endpoint name", r.into, p.source),
    ];
    if p.replicas.is_empty() {
        lines.push(format!("{ds}/replicas: no read replica listed: none to rebuild"));
    }
    for x in &p.replicas {
        lines.push(format!(
            "{ds}/replicas: rename the read replica {} ({}) to {} and make {} again as a read replica of the new {}",
            x.id, x.zone, x.aside, x.id, p.source
        ));
    }
    lines
}

fn act(e: drctl_aws::Error) -> ActionError {
    match e {
        drctl_aws::Error::Api { transient: true, .. } => ActionError::Transient(e.to_string()),
        other => ActionError::Fatal(other.to_string()),
    }
}

fn plan(req: &Request) -> Result<&RdsReplace, ActionError> {
    req.rds_replace.as_ref().ok_or_else(|| ActionError::Fatal("this restore does not replace an RDS primary".into()))
}

/// Waits until no instance is named `id` any more (a rename away from it
/// has taken effect).
async fn wait_gone(rds: &Rds, id: &str) -> Result<(), ActionError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while calls::instance(rds, id).await.map_err(act)?.is_some() {
        if tokio::time::Instant::now() >= deadline {
            return Err(ActionError::Transient(format!("{id} still exists {}s after it was renamed", WAIT.as_secs())));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

/// Renames `from` to `to` unless `to` exists already; waits for `to` in
/// one of `states` and for `from` to be gone. `Ok(true)` when renamed now.
async fn move_aside(rds: &Rds, from: &str, to: &str, states: &[&str]) -> Result<(bool, Instance), ActionError> {
    let renamed = match (calls::instance(rds, to).await.map_err(act)?, calls::instance(rds, from).await.map_err(act)?) {
        (Some(_), _) => false,
        (None, Some(_)) => {
            calls::rename(rds, from, to).await.map_err(act)?;
            true
        }
        (None, None) => {
            return Err(ActionError::Transient(format!(
                "neither {from} nor {to} exists (a rename under way?): `drctl retry` looks again"
            )))
        }
    };
    let now = calls::wait_for(rds, to, states, WAIT).await.map_err(act)?;
    wait_gone(rds, from).await?;
    Ok((renamed, now))
}

/// `DS/fence`: the old primary renamed aside (its endpoint name goes with
/// it), then stopped where RDS allows it.
pub(crate) async fn fence(rds: &Rds, req: &Request) -> Result<Note, ActionError> {
    let p = plan(req)?;
    if is_cluster(req) {
        return fence_cluster(rds, p).await;
    }
    let (renamed, old) = move_aside(rds, &p.source, &p.aside, &["available", "stopping", "stopped"]).await?;
    let mut notes = vec![if renamed {
        format!("renamed the old primary {} to {}: clients no longer reach it by its endpoint name", p.source, p.aside)
    } else {
        format!("the old primary is at {} already (an earlier attempt)", p.aside)
    }];
    if !old.replicas.is_empty() {
        notes.push(format!(
            "not stopped: RDS does not stop an instance with read replicas ({}); stop {} once they are deleted",
            old.replicas.join(", "),
            p.aside
        ));
        return Ok(Some(notes.join("; ")));
    }
    if old.status == "available" {
        calls::stop(rds, &p.aside).await.map_err(act)?;
    }
    calls::wait_for(rds, &p.aside, &["stopped"], WAIT).await.map_err(act)?;
    notes.push(format!(
        "{} is stopped: it takes no write at its new name (RDS starts a stopped instance again after seven days)",
        p.aside
    ));
    Ok(Some(notes.join("; ")))
}

/// `DS/switch`: the restored instance renamed to the primary's identifier.
pub(crate) async fn switch(rds: &Rds, req: &Request) -> Result<Note, ActionError> {
    let p = plan(req)?;
    if is_cluster(req) {
        return switch_cluster(rds, req, p).await;
    }
    let into = calls::instance(rds, &req.into).await.map_err(act)?.is_some();
    let named = calls::instance(rds, &p.source).await.map_err(act)?.is_some();
    let aside = !into && named && calls::instance(rds, &p.aside).await.map_err(act)?.is_some();
    let note = match switch_decision(&INSTANCE_WORDS, req, p, into, named, aside)? {
        Switch::Rename => {
            calls::rename(rds, &req.into, &p.source).await.map_err(act)?;
            format!("renamed {} to {}", req.into, p.source)
        }
        Switch::Done => format!("{} was renamed {} by an earlier attempt", req.into, p.source),
    };
    calls::wait_for(rds, &p.source, &["available"], WAIT).await.map_err(act)?;
    wait_gone(rds, &req.into).await?;
    let endpoint = drctl_aws::rds_restore::instance_endpoint(rds, &p.source).await.map_err(act)?;
    let at = endpoint.map(|(h, port)| format!(" ({h}:{port})")).unwrap_or_default();
    Ok(Some(format!(
        "{note}: the instance restored to {} serves at the old endpoint name{at}",
        if req.to == "latest" { "the latest restorable time" } else { &req.target }
    )))
}

/// Waits until no cluster is named `id` any more.
async fn wait_cluster_gone(rds: &Rds, id: &str) -> Result<(), ActionError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while calls::cluster(rds, id).await.map_err(act)?.is_some() {
        if tokio::time::Instant::now() >= deadline {
            return Err(ActionError::Transient(format!("{id} still exists {}s after it was renamed", WAIT.as_secs())));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

/// `DS/instances` of a cluster: each planned instance created in the
/// restored cluster unless it exists, then all waited for.
pub(crate) async fn instances(rds: &Rds, req: &Request) -> Result<Note, ActionError> {
    let p = plan(req)?;
    let mut made = Vec::new();
    for i in &p.instances {
        if calls::instance(rds, &i.id).await.map_err(act)?.is_none() {
            calls::create_cluster_instance(rds, &i.id, &req.into, &i.class, &i.engine).await.map_err(act)?;
            made.push(i.id.clone());
        }
    }
    for i in &p.instances {
        calls::wait_for(rds, &i.id, &["available"], WAIT).await.map_err(act)?;
    }
    let ids: Vec<&str> = p.instances.iter().map(|i| i.id.as_str()).collect();
    Ok(Some(if made.len() == ids.len() {
        format!("added {} to {}; available", ids.join(", "), req.into)
    } else {
        format!("{} in {} available ({} made by an earlier attempt)", ids.join(", "), req.into, ids.len() - made.len())
    }))
}

/// `DS/fence` of a cluster: the old cluster renamed aside (its endpoint
/// names go with it) unless an earlier attempt did, then stopped.
async fn fence_cluster(rds: &Rds, p: &RdsReplace) -> Result<Note, ActionError> {
    let renamed =
        match (calls::cluster(rds, &p.aside).await.map_err(act)?, calls::cluster(rds, &p.source).await.map_err(act)?) {
            (Some(_), _) => false,
            (None, Some(_)) => {
                calls::rename_cluster(rds, &p.source, &p.aside).await.map_err(act)?;
                true
            }
            (None, None) => {
                return Err(ActionError::Transient(format!(
                    "neither {} nor {} exists (a rename under way?): `drctl retry` looks again",
                    p.source, p.aside
                )))
            }
        };
    let old = calls::wait_for_cluster(rds, &p.aside, &["available", "stopping", "stopped"], WAIT).await.map_err(act)?;
    wait_cluster_gone(rds, &p.source).await?;
    // Its members keep endpoints of their own: stopped, they take no write there either.
    if old.status == "available" {
        calls::stop_cluster(rds, &p.aside).await.map_err(act)?;
    }
    calls::wait_for_cluster(rds, &p.aside, &["stopped"], WAIT).await.map_err(act)?;
    Ok(Some(if renamed {
        format!("renamed the old cluster {} to {} and stopped it: clients no longer reach it by its endpoint names, and its instances take no write at theirs (RDS starts a stopped cluster again after seven days)", p.source, p.aside)
    } else {
        format!("the old cluster is at {} already (an earlier attempt), and stopped", p.aside)
    }))
}

/// What the switch does, from which names exist: the restored copy
/// (`into`), the datastore's own name (`named`) and the old one's name
/// aside (`aside`, looked up only when the copy is gone).
enum Switch {
    Rename,
    /// An earlier attempt renamed it.
    Done,
}

/// How the switch speaks of an instance or a cluster.
struct Words {
    a: &'static str,
    old: &'static str,
    /// The old one, as the sentence that names the new one calls it.
    old_again: &'static str,
    describe: &'static str,
}

const INSTANCE_WORDS: Words =
    Words { a: "an instance", old: "the old primary", old_again: "the old primary", describe: "describe-db-instances" };
const CLUSTER_WORDS: Words =
    Words { a: "a cluster", old: "the old cluster", old_again: "the old one", describe: "describe-db-clusters" };

/// The switch's one decision table, for instances and clusters alike.
fn switch_decision(
    w: &Words,
    req: &Request,
    p: &RdsReplace,
    into: bool,
    named: bool,
    aside: bool,
) -> Result<Switch, ActionError> {
    match (into, named) {
        (true, false) => Ok(Switch::Rename),
        (true, true) => Err(ActionError::Fatal(format!(
            "{} {} exists beside the restored {} although {} was renamed {}: find out what took the name; nothing was renamed",
            w.a, p.source, req.into, w.old_again, p.aside
        ))),
        (false, true) if aside => Ok(Switch::Done),
        (false, true) => Err(ActionError::Fatal(format!(
            "{} is gone and {} is not at {}: look at `aws rds {}`; nothing was renamed",
            req.into, w.old, p.aside, w.describe
        ))),
        (false, false) => Err(ActionError::Transient(format!(
            "neither {} nor {} exists (a rename under way?): `drctl retry` looks again",
            req.into, p.source
        ))),
    }
}

/// `DS/switch` of a cluster: the restored cluster renamed to the old one's
/// identifier.
async fn switch_cluster(rds: &Rds, req: &Request, p: &RdsReplace) -> Result<Note, ActionError> {
    let into = calls::cluster(rds, &req.into).await.map_err(act)?.is_some();
    let named = calls::cluster(rds, &p.source).await.map_err(act)?.is_some();
    let aside = !into && named && calls::cluster(rds, &p.aside).await.map_err(act)?.is_some();
    let note = match switch_decision(&CLUSTER_WORDS, req, p, into, named, aside)? {
        Switch::Rename => {
            calls::rename_cluster(rds, &req.into, &p.source).await.map_err(act)?;
            format!("renamed {} to {}", req.into, p.source)
        }
        Switch::Done => format!("{} was renamed {} by an earlier attempt", req.into, p.source),
    };
    calls::wait_for_cluster(rds, &p.source, &["available"], WAIT).await.map_err(act)?;
    wait_cluster_gone(rds, &req.into).await?;
    Ok(Some(format!(
        "{note}: the cluster restored to {} serves at the old endpoint names",
        if req.to == "latest" { "the latest restorable time" } else { &req.target }
    )))
}

/// `DS/replicas`: each listed read replica renamed aside and made again
/// from the new primary, in its zone and class.
pub(crate) async fn replicas(rds: &Rds, req: &Request) -> Result<Note, ActionError> {
    let p = plan(req)?;
    let mut notes = Vec::new();
    for r in &p.replicas {
        let (renamed, old) = match calls::instance(rds, &r.aside).await.map_err(act)? {
            Some(old) => (false, old),
            None => move_aside(rds, &r.id, &r.aside, &["available", "stopped", "stopping"]).await?,
        };
        let made = if calls::instance(rds, &r.id).await.map_err(act)?.is_none() {
            calls::create_replica(rds, &r.id, &p.source, old.availability_zone.as_deref(), old.class.as_deref())
                .await
                .map_err(act)?;
            true
        } else {
            false
        };
        calls::wait_for(rds, &r.id, &["available"], WAIT).await.map_err(act)?;
        notes.push(format!(
            "{}: {} to {}, {} as a read replica of the new {}",
            r.id,
            if renamed { "renamed aside" } else { "already renamed aside" },
            r.aside,
            if made { "made again" } else { "made again by an earlier attempt" },
            p.source
        ));
    }
    if notes.is_empty() {
        notes.push("no read replica listed: none to rebuild".into());
    }
    Ok(Some(notes.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The old primary is renamed aside only once the copy is restored and
    /// cleaned, and the copy takes the name only after that: never two
    /// instances answering at the primary's endpoint name.
    #[test]
    fn the_copy_takes_the_name_only_after_the_old_primary_gave_it_up() {
        let req = Request {
            datastore: "ledger-db".into(),
            kind: "rds-instance".into(),
            replace: true,
            into: "ledger-a-restored-20261206050000".into(),
            rds_replace: Some(RdsReplace {
                source: "ledger-a".into(),
                aside: "ledger-a-replaced-20261206071502".into(),
                replicas: Vec::new(),
                instances: Vec::new(),
            }),
            ..Request::default()
        };
        let specs = crate::restore::steps(&req);
        let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            ["ledger-db/restore", "ledger-db/erasures", "ledger-db/fence", "ledger-db/switch", "ledger-db/replicas"]
        );
        for (i, s) in specs.iter().enumerate().skip(1) {
            assert_eq!(s.after, [i - 1], "{} waits for {}", s.id, specs[i - 1].id);
        }
        assert!(specs.iter().all(|s| s.rerun_safe), "each looks at the world first");
        let lines = describe(&req);
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(lines[4].contains("no read replica listed"), "{lines:?}");
        let plain = Request { rds_replace: None, replace: false, ..req };
        assert_eq!(crate::restore::steps(&plain).len(), 1, "a restore beside the datastore renames nothing");
    }

    /// A cluster's copy gets its instances before anything is switched,
    /// and the old cluster gives up its name before the copy takes it.
    #[test]
    fn a_cluster_copy_is_given_instances_before_the_names_move() {
        let req = Request {
            datastore: "orders".into(),
            kind: "rds-cluster".into(),
            replace: true,
            into: "orders-aurora-restored-20261206050000".into(),
            rds_replace: Some(RdsReplace {
                source: "orders-aurora".into(),
                aside: "orders-aurora-replaced-20261206071502".into(),
                replicas: Vec::new(),
                instances: vec![NewInstance {
                    id: "orders-aurora-restored-20261206050000-1".into(),
                    class: "db.r6g.large".into(),
                    engine: "aurora-postgresql".into(),
                }],
            }),
            ..Request::default()
        };
        let specs = crate::restore::steps(&req);
        let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["orders/restore", "orders/instances", "orders/erasures", "orders/fence", "orders/switch"]);
        for (i, s) in specs.iter().enumerate().skip(1) {
            assert_eq!(s.after, [i - 1], "{} waits for {}", s.id, specs[i - 1].id);
        }
        let lines = describe(&req);
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(lines[1].contains("orders-aurora-restored-20261206050000-1 (db.r6g.large)"), "{lines:?}");
    }

    #[test]
    fn a_journaled_rds_replace_refuses_unknown_fields() {
        let bad = r#"{"source":"a","aside":"a-replaced-1","replicas":[],"stop":true}"#;
        assert!(serde_json::from_str::<RdsReplace>(bad).is_err());
    }
}
