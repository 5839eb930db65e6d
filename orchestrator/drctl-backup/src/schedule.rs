//! The backups a topology schedules (`backup: { full: CRON, diff: ..,
//! incr: .. }`), and when each is due next. The controller's leader runs
//! them (docs/restore.md); this module only says what and when, so the
//! schedule is tested on a virtual clock.

use crate::pgbackrest::Kind;
use chrono::{DateTime, Utc};
use drctl_core::topology::backup::Backup;
use drctl_core::topology::{EntitySpec, Topology};
use std::str::FromStr;

/// One scheduled backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub datastore: String,
    pub kind: Kind,
    /// The 6/7-field cron expression validation produced.
    pub cron: String,
}

/// Every scheduled backup of the topology.
pub fn jobs(topo: &Topology) -> Vec<Job> {
    let mut out = Vec::new();
    for e in &topo.entities {
        let EntitySpec::Datastore(ds) = &e.spec else { continue };
        let Some(Backup::PgBackRest(spec)) = &ds.backup else { continue };
        for (kind, cron) in spec.schedules() {
            if let Some(kind) = Kind::parse(kind) {
                out.push(Job { datastore: e.name.clone(), kind, cron: cron.to_string() });
            }
        }
    }
    out
}

/// The next job due strictly after `after`, and when. Jobs of one
/// datastore due at the same time: the fuller one only (a full backup
/// makes the incremental due with it pointless).
pub fn next_due(jobs: &[Job], after: DateTime<Utc>) -> Option<(DateTime<Utc>, Job)> {
    let mut due: Vec<(DateTime<Utc>, &Job)> =
        jobs.iter().filter_map(|j| Some((cron::Schedule::from_str(&j.cron).ok()?.after(&after).next()?, j))).collect();
    due.sort_by_key(|(t, j)| (*t, rank(j.kind)));
    due.first().map(|(t, j)| (*t, (*j).clone()))
}

/// The same instant's other jobs of that datastore, which the one taken covers.
pub fn covered(jobs: &[Job], taken: &Job, at: DateTime<Utc>) -> Vec<Job> {
    jobs.iter()
        .filter(|j| j.datastore == taken.datastore && *j != taken)
        .filter(|j| {
            cron::Schedule::from_str(&j.cron)
                .ok()
                .and_then(|s| s.after(&(at - chrono::Duration::seconds(1))).next())
                .is_some_and(|t| t == at)
        })
        .cloned()
        .collect()
}

fn rank(k: Kind) -> u8 {
    match k {
        Kind::Full => 0,
        Kind::Diff => 1,
        Kind::Incr => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn topo() -> Topology {
        let src = "version: 1\nzones: [ { name: az1 }, { name: az2 }, { name: az3 } ]\n\
                   datastores:\n  - name: db\n    kind: postgres\n    primary: { zone: az1, url: \"postgres://x@127.0.0.1:1/p\" }\n    \
                   backup: { tool: pgbackrest, repo: { zone: az3, path: /var/lib/pgbackrest }, full: \"0 3 * * 0\", incr: \"0 3 * * *\" }\n";
        let loaded = drctl_core::load_str(src, std::path::Path::new("t.yaml"));
        loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))
    }

    /// Daily incrementals at 03:00, a full one on Sundays: on Sunday the
    /// full one is taken and the incremental it covers is not.
    #[test]
    fn the_next_backup_is_the_soonest_and_a_full_one_covers_the_incremental_due_with_it() {
        let jobs = jobs(&topo());
        assert_eq!(jobs.len(), 2);
        // Friday 2026-12-04 10:00 UTC: Saturday 03:00's incremental.
        let fri = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        let (at, job) = next_due(&jobs, fri).unwrap();
        assert_eq!((at, job.kind), (Utc.with_ymd_and_hms(2026, 12, 5, 3, 0, 0).unwrap(), Kind::Incr));
        // Saturday 10:00: Sunday 03:00, the full one, covering the incremental.
        let (at, job) = next_due(&jobs, Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap()).unwrap();
        assert_eq!((at, job.kind), (Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap(), Kind::Full));
        let covered = covered(&jobs, &job, at);
        assert_eq!(covered.iter().map(|j| j.kind).collect::<Vec<_>>(), [Kind::Incr]);
        // Right after it, the next is Monday's incremental (never the same instant twice).
        let (at, job) = next_due(&jobs, at).unwrap();
        assert_eq!((at, job.kind), (Utc.with_ymd_and_hms(2026, 12, 7, 3, 0, 0).unwrap(), Kind::Incr));
    }
}
