//! Scheduled backups (`backup: { full: CRON, diff: .., incr: .. }`), taken
//! by the leader as their crons come due (docs/restore.md). Each is audited
//! before it starts, by the scheduler; one that fails is said in the log
//! and tried again at its next time (readiness then warns of the backup
//! RPO). What is due when is drctl-backup's ([`drctl_backup::schedule`]).

use crate::Shared;
use chrono::{DateTime, Utc};
use drctl_backup::schedule::{covered, jobs, next_due};
use drctl_control::declare::Actor;
use drctl_runtime::CancellationToken;
use serde_json::json;
use std::sync::Arc;

/// Whether the topology schedules any backup (the leader runs [`run`] then).
pub(crate) fn any(s: &Shared) -> bool {
    !jobs(&s.opts.topology).is_empty()
}

/// The leader's loop: sleep until the next backup is due, take it, repeat.
pub(crate) async fn run(s: Arc<Shared>, stop: CancellationToken) {
    let jobs = jobs(&s.opts.topology);
    let site = drctl_backup::site_dir(&s.opts.topology);
    let clock = s.opts.clock.clone();
    let mut after = DateTime::<Utc>::from(clock.now());
    loop {
        let Some((at, job)) = next_due(&jobs, after) else { return };
        tokio::select! {
            _ = clock.sleep_until(at.into()) => {}
            _ = stop.cancelled() => return,
        }
        after = at;
        let what = format!("scheduled {} backup of {}", job.kind.as_str(), job.datastore);
        let who = Actor::new("scheduler", "controller");
        let request = json!({ "kind": job.kind.as_str(), "cron": job.cron });
        if let Err(e) = crate::api::auth::audit(&s, &who, "backup", &format!("datastore {}", job.datastore), &request) {
            (s.opts.say)(&format!("{what}: not taken, the audit log cannot record it: {}", e.body["error"]));
            continue;
        }
        let started = std::time::Instant::now();
        // The primary where it is now: after a failover, the new one.
        let taken = match drctl_backup::pg_datastore_now(&s.opts.topology, &*s.opts.state, &job.datastore) {
            Ok(ds) => {
                if let Some(w) = ds.zone_warning() {
                    (s.opts.say)(&format!("{what}: {w}"));
                }
                drctl_backup::take_backup(&site, &ds, job.kind).await
            }
            Err(e) => Err(e),
        };
        match taken {
            Ok(set) => (s.opts.say)(&format!(
                "{what}: {} finished in {:.1} s ({} bytes, {} in the repository)",
                set.label,
                started.elapsed().as_secs_f64(),
                set.size,
                set.repo_size
            )),
            Err(e) => (s.opts.say)(&format!("{what} FAILED: {e}; tried again at its next time")),
        }
        for c in covered(&jobs, &job, at) {
            (s.opts.say)(&format!("the {} backup of {} due with it is covered by it", c.kind.as_str(), c.datastore));
        }
    }
}
