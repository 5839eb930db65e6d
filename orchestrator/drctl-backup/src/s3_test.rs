//! Restore tests of S3 datastores: the bucket restored from its versions,
//! as it was at the point asked for, into a bucket of its own
//! (`drctl-restore-<id>`) that no part of the estate names, then checked
//! (how many keys under a prefix, a chosen key's SHA-256), measured, and
//! removed with every version unless kept.
//!
//! The copy is made by the same function `drctl restore` uses for an S3
//! datastore, so a passing test says that a real restore would work.
//! The recovery-point error is the point asked for against the newest
//! write the restored keys really hold.

use crate::restore::{epoch, rfc3339};
use crate::Error;
use drctl_aws::s3::Bucket;
use drctl_control::erasure::Eraser;
use drctl_control::live::Clients;
use drctl_core::restore_test::{Check, Point, RestoreTest};
use drctl_core::topology::backup::Backup;
use drctl_core::topology::{Datastore, Location, Topology};
use drctl_state::State;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What one S3 restore test found.
pub(crate) struct Outcome {
    pub requested: SystemTime,
    /// The newest write the copy holds.
    pub recovered: Option<SystemTime>,
    pub checks: Vec<Value>,
    /// The restore itself failed.
    pub error: Option<String>,
    /// The copy's bucket, when it is kept.
    pub kept: Option<String>,
    /// The ledger's requests made after the point, replayed on the copy
    /// before its checks.
    pub erasures: drctl_control::erasure::Replayed,
}

/// The point a test asks for: `random` is within the versions' retention.
fn requested(to: &Point, ds: &Datastore, now: SystemTime) -> Result<SystemTime, Error> {
    Ok(match to {
        Point::Latest => now,
        Point::Ago(d) => now - *d,
        Point::At(t) => crate::restore::resolve_target(t, now)?,
        Point::Random => {
            let keep = match &ds.backup {
                Some(Backup::S3Versions { versions }) => *versions,
                _ => Duration::ZERO,
            };
            let mut b = [0u8; 8];
            let _ = getrandom::getrandom(&mut b);
            let share = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
            now - Duration::from_secs_f64(keep.as_secs_f64() * share)
        }
    })
}

/// The scratch bucket of a test: `drctl-restore-` and the test's id, in
/// the characters a bucket name allows.
pub(crate) fn scratch_bucket(id: &str) -> String {
    let tail: String =
        id.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let mut name = format!("{}{tail}", drctl_aws::iam::SCRATCH_BUCKET_PREFIX);
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// Restores `ds` into its scratch bucket, runs the checks, removes the
/// copy unless `keep`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    topo: &Arc<Topology>,
    state: &Arc<State>,
    clients: &Arc<Clients>,
    ds: &Datastore,
    test: &RestoreTest,
    id: &str,
    keep: bool,
    now: SystemTime,
) -> Result<Outcome, Error> {
    let at = requested(&test.to, ds, now)?;
    let Some(src) = drctl_control::live::buckets(clients, topo, ds).await.into_iter().next() else {
        return Err(Error::NotBackedUp(format!("S3 datastore `{}` has no primary bucket", test.datastore)));
    };
    let region = match ds.primary.as_ref().map(|m| &m.location) {
        Some(Location::S3 { region, .. }) => region.clone().or_else(|| ds.region.clone()),
        _ => ds.region.clone(),
    };
    let name = scratch_bucket(id);
    let copy = Bucket {
        zone: src.zone.clone(),
        name: name.clone(),
        endpoint: src.endpoint.clone(),
        client: clients.s3(src.endpoint.as_deref(), region.as_deref()).await,
    };
    let mut out = Outcome {
        requested: at,
        recovered: None,
        checks: Vec::new(),
        error: None,
        kept: None,
        erasures: Default::default(),
    };
    let made = copy.client.create_bucket().bucket(&name).send().await;
    if let Err(e) = made {
        out.error = Some(format!("create the scratch bucket {name}: {}", drctl_aws::explain(&e)));
        return Ok(out);
    }
    match drctl_aws::s3_restore::restore_with(
        &src,
        "",
        at,
        &drctl_aws::s3_restore::Dest::Copy { bucket: copy.clone(), prefix: String::new() },
        &drctl_aws::s3_restore::Copying::like_replication(ds.replication.as_ref()),
    )
    .await
    {
        Ok(sum) if sum.failed.is_empty() => {
            out.recovered = sum.newest;
            // No restore brings an erased subject back: the ledger's requests
            // made after the point are replayed on the copy before it is checked.
            let eraser = Eraser::new(topo.clone(), state.clone(), clients.clone());
            match eraser.replay_on_bucket(&test.datastore, &copy, "", "", at).await {
                Ok(r) => {
                    out.erasures = r;
                    for c in &test.verify {
                        out.checks.push(check(&copy, &c.value).await);
                    }
                }
                Err(e) => out.error = Some(format!("replaying the erasures on the copy: {e}")),
            }
        }
        Ok(sum) => {
            let list: Vec<String> = sum.failed.iter().take(5).map(|(k, why)| format!("{k}: {why}")).collect();
            out.error = Some(format!("{} key(s) not restored: {}", sum.failed.len(), list.join("; ")));
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    if keep && out.error.is_none() {
        out.kept = Some(name);
    } else if let Err(e) = drctl_aws::s3_restore::remove_bucket(&copy).await {
        // The test's verdict stands; the leftover bucket is named for removal by hand.
        tracing::warn!(bucket = %name, error = %e, "the restore test's scratch bucket could not be removed");
        out.checks.push(json!({ "check": "remove the copy", "passed": false,
            "error": format!("{e}: remove bucket {name} by hand") }));
    }
    Ok(out)
}

async fn check(copy: &Bucket, c: &Check) -> Value {
    match c {
        Check::Objects { prefix, expect, at_least } => match drctl_aws::s3_restore::count_under(copy, prefix).await {
            Ok(n) => {
                let passed = expect.is_none_or(|e| n == e) && at_least.is_none_or(|m| n >= m);
                json!({ "check": c.label(), "objects": prefix, "expect": expect, "at_least": at_least,
                        "got": n, "passed": passed })
            }
            Err(e) => json!({ "check": c.label(), "objects": prefix, "got": null, "passed": false,
                              "error": e.to_string() }),
        },
        Check::Checksum { key, sha256 } => match drctl_aws::s3_restore::sha256_of(copy, key).await {
            Ok(got) => json!({ "check": c.label(), "key": key, "expect": sha256, "got": got,
                               "passed": got.as_deref() == Some(sha256.as_str()),
                               "error": got.is_none().then(|| format!("no key `{key}` in the copy")) }),
            Err(e) => json!({ "check": c.label(), "key": key, "got": null, "passed": false, "error": e.to_string() }),
        },
        Check::Sql { sql, .. } => json!({ "check": c.label(), "sql": sql, "got": null, "passed": false,
                                         "error": "an SQL check on an S3 copy" }),
    }
}

/// The report's `recovered_point` and `recovery_point_error_s`.
pub(crate) fn recovery(out: &Outcome) -> (Option<String>, Option<f64>) {
    let r = out.recovered;
    (r.map(rfc3339), r.map(|r| epoch(out.requested) - epoch(r)))
}
