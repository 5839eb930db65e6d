//! RPO samples, each standby's lag, replication runs and checkpoints,
//! replicated objects and conflicts, and published documents, in SQLite
//! tables.

use super::Sqlite;
use crate::error::Result;
use crate::model::samples::{MultipartCheckpoint, ReplicatedObject, RpoSample, RunTotals, Samples};
use crate::model::times::millis;
use rusqlite::{params, OptionalExtension};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

impl Samples for Sqlite {
    fn location(&self) -> &str {
        &self.location
    }

    fn schema_version(&self) -> Result<i64> {
        crate::blocking::offload(|| {
            Ok(self.conn().query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?)
        })
    }

    fn record_rpo_samples(&self, samples: &[RpoSample]) -> Result<()> {
        crate::blocking::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO rpo_samples (datastore, at_ms, rpo_s, target_s, error) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for s in samples {
                    stmt.execute(params![s.datastore, millis(s.at), s.rpo_s, s.target_s, s.error])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn record_replica_lags(&self, datastore: &str, at: SystemTime, lags: &[(String, Option<f64>)]) -> Result<()> {
        crate::blocking::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO replica_samples (datastore, zone, at_ms, lag_s) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (zone, lag) in lags {
                    stmt.execute(params![datastore, zone, millis(at), lag])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn last_replica_lag(&self, datastore: &str, zone: &str) -> Result<Option<(SystemTime, f64)>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT at_ms, lag_s FROM replica_samples
                 WHERE datastore = ?1 AND zone = ?2 AND lag_s IS NOT NULL ORDER BY at_ms DESC LIMIT 1",
            )?;
            Ok(stmt
                .query_row(params![datastore, zone], |r| {
                    Ok((UNIX_EPOCH + Duration::from_millis(r.get::<_, i64>(0)?.max(0) as u64), r.get::<_, f64>(1)?))
                })
                .optional()?)
        })
    }

    fn rpo_samples(&self, datastore: &str, since: SystemTime) -> Result<Vec<RpoSample>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT at_ms, rpo_s, target_s, error FROM rpo_samples WHERE datastore = ?1 AND at_ms >= ?2 ORDER BY at_ms",
            )?;
            let rows = stmt.query_map(params![datastore, millis(since)], |r| {
                Ok(RpoSample {
                    datastore: datastore.to_string(),
                    at: UNIX_EPOCH + Duration::from_millis(r.get::<_, i64>(0)? as u64),
                    rpo_s: r.get(1)?,
                    target_s: r.get(2)?,
                    error: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        })
    }

    fn begin_replication_run(&self, datastore: &str, at: SystemTime) -> Result<i64> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            conn.execute(
                "INSERT INTO replication_runs (datastore, started_ms) VALUES (?1, ?2)",
                params![datastore, millis(at)],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn finish_replication_run(&self, id: i64, at: SystemTime, totals: RunTotals, error: Option<&str>) -> Result<()> {
        crate::blocking::offload(|| {
            self.conn().execute(
                "UPDATE replication_runs SET finished_ms = ?2, copied = ?3, bytes = ?4, skipped = ?5, failed = ?6, error = ?7 WHERE id = ?1",
                params![id, millis(at), totals.copied as i64, totals.bytes as i64, totals.skipped as i64, totals.failed as i64, error],
            )?;
            Ok(())
        })
    }

    fn open_replication_runs(&self, datastore: &str) -> Result<Vec<SystemTime>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT started_ms FROM replication_runs WHERE datastore = ?1 AND finished_ms IS NULL ORDER BY started_ms",
            )?;
            let rows = stmt.query_map(params![datastore], |r| {
                Ok(UNIX_EPOCH + Duration::from_millis(r.get::<_, i64>(0)?.max(0) as u64))
            })?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        })
    }

    fn last_replication_run(&self, datastore: &str) -> Result<Option<(SystemTime, RunTotals, Option<String>)>> {
        crate::blocking::offload(|| {
            Ok(self
                .conn()
                .query_row(
                    "SELECT finished_ms, copied, bytes, skipped, failed, error FROM replication_runs
                     WHERE datastore = ?1 AND finished_ms IS NOT NULL ORDER BY id DESC LIMIT 1",
                    params![datastore],
                    |r| {
                        Ok((
                            UNIX_EPOCH + Duration::from_millis(r.get::<_, i64>(0)? as u64),
                            RunTotals {
                                copied: r.get::<_, i64>(1)? as u64,
                                bytes: r.get::<_, i64>(2)? as u64,
                                skipped: r.get::<_, i64>(3)? as u64,
                                failed: r.get::<_, i64>(4)? as u64,
                            },
                            r.get(5)?,
                        ))
                    },
                )
                .optional()?)
        })
    }

    fn multipart_checkpoint(&self, datastore: &str, zone: &str, key: &str) -> Result<Option<MultipartCheckpoint>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let head = conn
                .query_row(
                    "SELECT upload_id, source_etag, part_size FROM multipart_checkpoints WHERE datastore = ?1 AND replica_zone = ?2 AND key = ?3",
                    params![datastore, zone, key],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)),
                )
                .optional()?;
            let Some((upload_id, source_etag, part_size)) = head else { return Ok(None) };
            let mut stmt = conn.prepare_cached(
                "SELECT part_number, etag FROM multipart_parts WHERE datastore = ?1 AND replica_zone = ?2 AND key = ?3 ORDER BY part_number",
            )?;
            let parts = stmt
                .query_map(params![datastore, zone, key], |r| Ok((r.get::<_, i32>(0)?, r.get::<_, String>(1)?)))?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(Some(MultipartCheckpoint { upload_id, source_etag, part_size: part_size as u64, parts }))
        })
    }

    fn start_multipart(&self, datastore: &str, zone: &str, key: &str, cp: &MultipartCheckpoint) -> Result<()> {
        crate::blocking::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM multipart_parts WHERE datastore = ?1 AND replica_zone = ?2 AND key = ?3",
                params![datastore, zone, key],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO multipart_checkpoints (datastore, replica_zone, key, source_etag, upload_id, part_size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![datastore, zone, key, cp.source_etag, cp.upload_id, cp.part_size as i64],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn record_part(&self, datastore: &str, zone: &str, key: &str, part: i32, etag: &str) -> Result<()> {
        crate::blocking::offload(|| {
            self.conn().execute(
                "INSERT OR REPLACE INTO multipart_parts (datastore, replica_zone, key, part_number, etag) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![datastore, zone, key, part, etag],
            )?;
            Ok(())
        })
    }

    fn record_replicated(&self, datastore: &str, rows: &[ReplicatedObject]) -> Result<()> {
        crate::blocking::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO replicated_objects (datastore, zone, key, etag, source_etag, kept) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (datastore, zone, key) DO UPDATE
                     SET etag = excluded.etag, source_etag = excluded.source_etag, kept = excluded.kept",
                )?;
                for r in rows {
                    stmt.execute(params![datastore, r.zone, r.key, r.etag, r.source_etag, r.kept])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn replicated(&self, datastore: &str, zone: &str) -> Result<std::collections::HashMap<String, ReplicatedObject>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT key, etag, source_etag, kept FROM replicated_objects WHERE datastore = ?1 AND zone = ?2",
            )?;
            let rows = stmt.query_map(params![datastore, zone], |r| {
                let key: String = r.get(0)?;
                Ok((
                    key.clone(),
                    ReplicatedObject {
                        zone: zone.to_string(),
                        key,
                        etag: r.get(1)?,
                        source_etag: r.get(2)?,
                        kept: r.get(3)?,
                    },
                ))
            })?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        })
    }

    fn forget_replicated(&self, datastore: &str, zone: &str, key: &str) -> Result<()> {
        crate::blocking::offload(|| {
            self.conn().execute(
                "DELETE FROM replicated_objects WHERE datastore = ?1 AND zone = ?2 AND key = ?3",
                params![datastore, zone, key],
            )?;
            Ok(())
        })
    }

    fn replace_conflicts(&self, datastore: &str, zone: &str, rows: &[(String, String, String)]) -> Result<()> {
        crate::blocking::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM replication_conflicts WHERE datastore = ?1 AND zone = ?2",
                params![datastore, zone],
            )?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR REPLACE INTO replication_conflicts (datastore, zone, key, etag, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (key, etag, reason) in rows {
                    stmt.execute(params![datastore, zone, key, etag, reason])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn conflicts(&self, datastore: &str) -> Result<Vec<(String, String, String, String)>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT zone, key, etag, reason FROM replication_conflicts WHERE datastore = ?1 ORDER BY zone, key",
            )?;
            let rows = stmt.query_map(params![datastore], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        })
    }

    fn keep_replicated(&self, datastore: &str, zone: &str, key: &str, etag: &str) -> Result<()> {
        crate::blocking::offload(|| {
            self.conn().execute(
                "INSERT INTO replicated_objects (datastore, zone, key, etag, source_etag, kept) VALUES (?1, ?2, ?3, ?4, ?4, 1)
                 ON CONFLICT (datastore, zone, key) DO UPDATE SET etag = excluded.etag, kept = 1",
                params![datastore, zone, key, etag],
            )?;
            Ok(())
        })
    }

    fn publish(&self, name: &str, value: &str) -> Result<()> {
        crate::blocking::offload(|| {
            self.conn().execute(
                "INSERT OR REPLACE INTO published (name, value, at_ms) VALUES (?1, ?2, ?3)",
                params![name, value, millis(self.now())],
            )?;
            Ok(())
        })
    }

    fn published(&self, name: &str) -> Result<Option<String>> {
        crate::blocking::offload(|| {
            Ok(self
                .conn()
                .query_row("SELECT value FROM published WHERE name = ?1", params![name], |r| r.get(0))
                .optional()?)
        })
    }

    fn clear_multipart(&self, datastore: &str, zone: &str, key: &str) -> Result<()> {
        crate::blocking::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            for table in ["multipart_parts", "multipart_checkpoints"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE datastore = ?1 AND replica_zone = ?2 AND key = ?3"),
                    params![datastore, zone, key],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store call that blocks (here: another thread holds the database)
    /// on the only worker of a runtime must not stall the tasks queued
    /// behind it: in the controller those are the lease renewals.

    #[test]
    fn multipart_checkpoints_survive_and_clear() {
        let s = Sqlite::in_memory().unwrap();
        let cp =
            MultipartCheckpoint { upload_id: "u1".into(), source_etag: "e".into(), part_size: 8 << 20, parts: vec![] };
        s.start_multipart("a", "z2", "big.bin", &cp).unwrap();
        s.record_part("a", "z2", "big.bin", 1, "p1").unwrap();
        s.record_part("a", "z2", "big.bin", 2, "p2").unwrap();
        let got = s.multipart_checkpoint("a", "z2", "big.bin").unwrap().unwrap();
        assert_eq!(got.parts, vec![(1, "p1".to_string()), (2, "p2".to_string())]);
        s.clear_multipart("a", "z2", "big.bin").unwrap();
        assert!(s.multipart_checkpoint("a", "z2", "big.bin").unwrap().is_none());
    }

    #[test]
    fn replication_runs_are_recorded() {
        let s = Sqlite::in_memory().unwrap();
        let id = s.begin_replication_run("assets", UNIX_EPOCH).unwrap();
        assert!(s.last_replication_run("assets").unwrap().is_none(), "unfinished runs are not 'last'");
        let totals = RunTotals { copied: 3, bytes: 30, skipped: 1, failed: 0 };
        s.finish_replication_run(id, UNIX_EPOCH + Duration::from_secs(5), totals, None).unwrap();
        let (at, got, err) = s.last_replication_run("assets").unwrap().unwrap();
        assert_eq!((at, got, err), (UNIX_EPOCH + Duration::from_secs(5), totals, None));
    }
}
