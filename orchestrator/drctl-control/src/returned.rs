//! An old primary that comes back after a failover it could not be fenced
//! for (dead at the time, powered off, cut off): the writes it took past
//! the point the new primary forked at are in no other copy. They cannot
//! be known while it is dark; once it answers again they can be counted,
//! and are, on the execution that promoted its successor, so that `show`
//! and the report say what the failover really lost.
//!
//! Found where a status sees two writable primaries of a datastore that a
//! failover moved: the member outside the zone the failover moved it to is
//! the old one. Counted from its own WAL: the bytes past the fork point
//! (journaled in the promote step's note), and the commits among them when
//! it has `pg_walinspect`. Recorded once per old primary.

use crate::live;
use drctl_core::status::StatusReport;
use drctl_core::topology::{DatastoreKind, EntitySpec, Topology};
use drctl_providers::postgres::{self, Lsn, PROMOTED_AT};
use drctl_state::journal::StepState;
use drctl_state::State;
use std::time::{Duration, SystemTime};

/// The journal event kind of an old primary found back.
pub const KIND: &str = "old_primary_back";

/// Looks at every datastore the report shows with two writable primaries
/// and records, on the execution that promoted the new one, what the old
/// one holds past the fork. Returns what it recorded now.
pub async fn look(topo: &Topology, state: &State, report: &StatusReport, at: SystemTime) -> Vec<String> {
    let mut recorded = Vec::new();
    let placements = state.placements().unwrap_or_default();
    for d in report.datastores.iter().filter(|d| d.kind == "postgres" && d.split_brain) {
        let Some((_, new_zone)) = placements.iter().find(|(name, _)| *name == d.name) else { continue };
        let Some(id) = topo.entity_id(&d.name) else { continue };
        let EntitySpec::Datastore(ds) = &topo.entity(id).spec else { continue };
        if ds.kind != DatastoreKind::Postgres {
            continue;
        }
        let Some((execution, step, fork)) = promotion_of(state, &d.name) else { continue };
        let told = state.events(&execution).unwrap_or_default();
        for m in live::postgres_members(topo, ds).iter().filter(|m| &m.zone != new_zone) {
            let mark = format!("the old primary in {} ", m.zone);
            if told.iter().any(|e| e.kind == KIND && e.detail.as_deref().is_some_and(|t| t.starts_with(&mark))) {
                continue;
            }
            let Some((bytes, commits)) = postgres::wal_past(&m.url, fork, Duration::from_secs(5)).await else {
                continue;
            };
            let what = match commits {
                Some(n) => format!("{n} commit(s) in {} of WAL", size(bytes)),
                None => format!("{} of WAL (its commits are counted with pg_walinspect)", size(bytes)),
            };
            let detail = format!(
                "{mark}answers again, writable, holding {what} past the promotion point {fork}: writes {new_zone} does not have; fence it, keep its data directory for review (pg_waldump), then rebuild it as a standby of {new_zone}"
            );
            if state.record_event(&execution, at, Some(&step), KIND, Some(&detail)).is_ok() {
                recorded.push(detail);
            }
        }
    }
    recorded
}

/// The newest execution that promoted `datastore`: its id, the promote
/// step, and the position the new timeline forked at.
fn promotion_of(state: &State, datastore: &str) -> Option<(String, String, Lsn)> {
    for row in state.executions().ok()? {
        let steps = state.steps(&row.id).unwrap_or_default();
        let found = steps.iter().find_map(|s| {
            let note = s.note.as_deref()?;
            // The note lists what the step did ("az2: promoted at 0/3000060", after any fence).
            let rest = &note[note.find(PROMOTED_AT)? + PROMOTED_AT.len()..];
            let lsn = Lsn::parse(rest.split(|c: char| c.is_whitespace() || c == ';').next()?)?;
            (s.entity == datastore && s.state == StepState::Succeeded).then(|| (s.id.clone(), lsn))
        });
        if let Some((step, lsn)) = found {
            return Some((row.id, step, lsn));
        }
    }
    None
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
    }
}
