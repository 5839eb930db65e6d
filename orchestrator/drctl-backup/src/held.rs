//! Which backups still hold an erased subject, read from pgBackRest
//! rather than guessed from the retention: `pgbackrest info` lists the
//! sets the repository keeps, each with when it started (anything on the
//! primary then may be in it), and pgBackRest's time-based retention says
//! when each will go.
//!
//! Erasure (in drctl-control) cannot ask pgBackRest itself: this crate
//! depends on it, not the other way. The CLI and the controller read the
//! sets here and hand them to the eraser.

use crate::pgbackrest::BackupSet;
use drctl_control::erasure;
use drctl_core::topology::backup::Backup;
use drctl_core::Topology;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

fn at(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

/// When each set expires under a time retention of `retention`: pgBackRest
/// removes a full backup (and the differential and incremental backups
/// made on it) once a *newer* full backup is itself older than the
/// retention, so that any moment of the window stays restorable. A set
/// with no newer full backup yet has no expiry (`None`).
pub fn expiries(sets: &[BackupSet], retention: Option<Duration>) -> Vec<erasure::BackupSet> {
    let mut fulls: Vec<&BackupSet> = sets.iter().filter(|s| s.kind == "full").collect();
    fulls.sort_by_key(|s| s.started);
    let expires_full = |i: usize| -> Option<SystemTime> {
        let next = fulls.get(i + 1)?;
        Some(at(next.stopped) + retention?)
    };
    sets.iter()
        .map(|s| {
            // The full a set belongs to: itself, or the newest full started before it.
            let base = fulls.iter().rposition(|f| f.started <= s.started);
            erasure::BackupSet {
                label: s.label.clone(),
                started: at(s.started),
                expires_at: base.and_then(expires_full),
            }
        })
        .collect()
}

/// The sets of every datastore backed up by pgBackRest whose repository
/// answers now, by datastore name; those that do not answer are left out
/// (the eraser then estimates them from their retention), each said in
/// `failed`.
pub async fn backup_sets(topo: &Topology, site: &Path) -> (HashMap<String, Vec<erasure::BackupSet>>, Vec<String>) {
    let (mut out, mut failed) = (HashMap::new(), Vec::new());
    for (_, e, ds) in topo.datastores() {
        let Some(Backup::PgBackRest(spec)) = &ds.backup else { continue };
        let read = async {
            let pg = crate::pg_datastore(topo, &e.name)?;
            let (stanza, _) = crate::stanza(site, &pg).await?;
            stanza.info().await
        };
        match read.await {
            Ok(info) => {
                out.insert(e.name.clone(), expiries(&info.backups, spec.retention));
            }
            Err(err) => failed.push(format!("{}: {err}", e.name)),
        }
    }
    (out, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(label: &str, kind: &str, started: i64) -> BackupSet {
        BackupSet { label: label.into(), kind: kind.into(), started, stopped: started + 10, size: 0, repo_size: 0 }
    }

    #[test]
    fn a_full_backup_goes_once_the_next_full_is_older_than_the_retention() {
        let day = 86_400;
        let sets = [
            set("F1", "full", 0),
            set("F1_I1", "incr", day),
            set("F2", "full", 7 * day),
            set("F2_D1", "diff", 8 * day),
        ];
        let e = expiries(&sets, Some(Duration::from_secs(14 * day as u64)));
        let exp: Vec<Option<SystemTime>> = e.iter().map(|s| s.expires_at).collect();
        let f1 = at(7 * day + 10) + Duration::from_secs(14 * day as u64);
        assert_eq!(exp, [Some(f1), Some(f1), None, None], "the newest full and its children wait for a newer one");
        assert_eq!(e[1].started, at(day));
        assert!(expiries(&sets, None).iter().all(|s| s.expires_at.is_none()), "no retention: kept");
    }
}
