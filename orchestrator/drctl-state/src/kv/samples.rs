//! Measurements and replication bookkeeping on the key-value space: RPO
//! samples (`rpo/DS/MS-N`, kept [`RPO_RETENTION`](super::RPO_RETENTION)),
//! each standby's last lag, replication runs and their totals, multipart
//! checkpoints, replicated objects, conflicts and published documents.

use super::{decode, encode, prefix_end, seg, Check, Kv, KvStore, Op, Txn, RPO_RETENTION};
use crate::error::Result;
use crate::model::samples::{MultipartCheckpoint, ReplicatedObject, RpoSample, RunTotals, Samples};
use crate::model::times::{millis, time};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

#[derive(Serialize, Deserialize)]
struct SampleDoc {
    at_ms: i64,
    rpo_s: Option<f64>,
    target_s: Option<f64>,
    error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct LagDoc {
    at_ms: i64,
    lag_s: f64,
}

#[derive(Serialize, Deserialize, Default, Clone, Copy)]
pub(super) struct TotalsDoc {
    copied: u64,
    bytes: u64,
    skipped: u64,
    failed: u64,
}

impl From<TotalsDoc> for RunTotals {
    fn from(t: TotalsDoc) -> RunTotals {
        RunTotals { copied: t.copied, bytes: t.bytes, skipped: t.skipped, failed: t.failed }
    }
}

#[derive(Serialize, Deserialize)]
struct RunDoc {
    datastore: String,
    started_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct LastRunDoc {
    finished_ms: i64,
    totals: TotalsDoc,
    error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct MultipartDoc {
    upload_id: String,
    source_etag: String,
    part_size: u64,
    parts: BTreeMap<i32, String>,
}

#[derive(Serialize, Deserialize)]
struct ReplicatedDoc {
    key: String,
    etag: String,
    source_etag: String,
    kept: bool,
}

#[derive(Serialize, Deserialize)]
struct ConflictDoc {
    key: String,
    etag: String,
    reason: String,
}

impl<K: Kv> KvStore<K> {
    fn object_key(&self, table: &str, datastore: &str, zone: &str, key: &str) -> String {
        self.key(&format!("{table}/{}/{}/{}", seg(datastore), seg(zone), seg(key)))
    }

    fn zone_prefix(&self, table: &str, datastore: &str, zone: &str) -> String {
        self.key(&format!("{table}/{}/{}/", seg(datastore), seg(zone)))
    }
}

impl<K: Kv> Samples for KvStore<K> {
    fn location(&self) -> &str {
        &self.location
    }

    fn schema_version(&self) -> Result<i64> {
        let key = self.key("schema");
        Ok(self.get_doc::<i64>(&key)?.map_or(0, |(v, _)| v))
    }

    fn record_rpo_samples(&self, samples: &[RpoSample]) -> Result<()> {
        use std::sync::atomic::Ordering;
        let mut ops = Vec::new();
        let mut oldest: HashMap<&str, i64> = HashMap::new();
        for s in samples {
            let n = self.sample_seq.fetch_add(1, Ordering::Relaxed) % 1_000_000;
            let key = self.key(&format!("rpo/{}/{:015}-{n:06}", seg(&s.datastore), millis(s.at)));
            let doc = SampleDoc { at_ms: millis(s.at), rpo_s: s.rpo_s, target_s: s.target_s, error: s.error.clone() };
            ops.push(Op::Put(key, encode(&doc)));
            let cutoff = millis(s.at) - RPO_RETENTION.as_millis() as i64;
            oldest.insert(&s.datastore, cutoff);
        }
        // The bounded history: what is older than the retention goes.
        for (ds, cutoff) in oldest {
            let prefix = self.key(&format!("rpo/{}/", seg(ds)));
            ops.push(Op::DeleteRange(prefix.clone(), format!("{prefix}{:015}", cutoff.max(0))));
        }
        self.put_chunked(ops, true)
    }

    fn rpo_samples(&self, datastore: &str, since: SystemTime) -> Result<Vec<RpoSample>> {
        let prefix = self.key(&format!("rpo/{}/", seg(datastore)));
        let start = format!("{prefix}{:015}", millis(since));
        let docs: Vec<SampleDoc> = self.scan_from(&prefix, &start)?;
        Ok(docs
            .into_iter()
            .map(|d| RpoSample {
                datastore: datastore.into(),
                at: time(d.at_ms),
                rpo_s: d.rpo_s,
                target_s: d.target_s,
                error: d.error,
            })
            .collect())
    }

    fn record_replica_lags(&self, datastore: &str, at: SystemTime, lags: &[(String, Option<f64>)]) -> Result<()> {
        // Only the last known lag of each standby is read back.
        let ops = lags
            .iter()
            .filter_map(|(zone, lag)| {
                lag.map(|lag_s| {
                    let key = self.key(&format!("lag/{}/{}", seg(datastore), seg(zone)));
                    Op::Put(key, encode(&LagDoc { at_ms: millis(at), lag_s }))
                })
            })
            .collect();
        self.put_chunked(ops, true)
    }

    fn last_replica_lag(&self, datastore: &str, zone: &str) -> Result<Option<(SystemTime, f64)>> {
        let key = self.key(&format!("lag/{}/{}", seg(datastore), seg(zone)));
        Ok(self.get_doc::<LagDoc>(&key)?.map(|(d, _)| (time(d.at_ms), d.lag_s)))
    }

    fn begin_replication_run(&self, datastore: &str, at: SystemTime) -> Result<i64> {
        self.retry(|| {
            let (id, check, op) = self.next_seq("run")?;
            let key = self.key(&format!("run/{id:012}"));
            let doc = RunDoc { datastore: datastore.into(), started_ms: millis(at) };
            let ok = self.kv.commit(Txn {
                checks: vec![check, Check::Absent(key.clone())],
                ops: vec![op, Op::Put(key, encode(&doc))],
                leader_only: true,
            })?;
            Ok(ok.then_some(id))
        })
    }

    fn finish_replication_run(&self, id: i64, at: SystemTime, totals: RunTotals, error: Option<&str>) -> Result<()> {
        let run_key = self.key(&format!("run/{id:012}"));
        self.retry(|| {
            let Some((run, run_version)) = self.get_doc::<RunDoc>(&run_key)? else { return Ok(Some(())) };
            let totals_key = self.key(&format!("run-totals/{}", seg(&run.datastore)));
            let current = self.get_doc::<(String, TotalsDoc)>(&totals_key)?;
            let version = current.as_ref().map(|(_, v)| *v);
            let mut sum = current.map(|((_, t), _)| t).unwrap_or_default();
            sum.copied += totals.copied;
            sum.bytes += totals.bytes;
            sum.skipped += totals.skipped;
            sum.failed += totals.failed;
            let t = TotalsDoc {
                copied: totals.copied,
                bytes: totals.bytes,
                skipped: totals.skipped,
                failed: totals.failed,
            };
            let last = LastRunDoc { finished_ms: millis(at), totals: t, error: error.map(str::to_string) };
            let last_key = self.key(&format!("run-last/{}", seg(&run.datastore)));
            let ok = self.kv.commit(Txn {
                checks: vec![Check::Version(run_key.clone(), run_version), Self::unchanged(&totals_key, version)],
                ops: vec![
                    Op::Delete(run_key.clone()),
                    Op::Put(totals_key.clone(), encode(&(run.datastore.clone(), sum))),
                    Op::Put(last_key, encode(&last)),
                ],
                leader_only: true,
            })?;
            Ok(ok.then_some(()))
        })
    }

    fn open_replication_runs(&self, datastore: &str) -> Result<Vec<SystemTime>> {
        // A finished run's document is deleted: those left are open.
        let runs: Vec<RunDoc> = self.scan_docs(&self.key("run/"))?;
        let mut open: Vec<SystemTime> =
            runs.into_iter().filter(|r| r.datastore == datastore).map(|r| time(r.started_ms)).collect();
        open.sort();
        Ok(open)
    }

    fn last_replication_run(&self, datastore: &str) -> Result<Option<(SystemTime, RunTotals, Option<String>)>> {
        let key = self.key(&format!("run-last/{}", seg(datastore)));
        Ok(self.get_doc::<LastRunDoc>(&key)?.map(|(d, _)| (time(d.finished_ms), d.totals.into(), d.error)))
    }

    fn multipart_checkpoint(&self, datastore: &str, zone: &str, key: &str) -> Result<Option<MultipartCheckpoint>> {
        let k = self.object_key("multipart", datastore, zone, key);
        Ok(self.get_doc::<MultipartDoc>(&k)?.map(|(d, _)| MultipartCheckpoint {
            upload_id: d.upload_id,
            source_etag: d.source_etag,
            part_size: d.part_size,
            parts: d.parts.into_iter().collect(),
        }))
    }

    fn start_multipart(&self, datastore: &str, zone: &str, key: &str, cp: &MultipartCheckpoint) -> Result<()> {
        let k = self.object_key("multipart", datastore, zone, key);
        let doc = MultipartDoc {
            upload_id: cp.upload_id.clone(),
            source_etag: cp.source_etag.clone(),
            part_size: cp.part_size,
            parts: BTreeMap::new(),
        };
        self.kv.commit(Txn { checks: vec![], ops: vec![Op::Put(k, encode(&doc))], leader_only: true })?;
        Ok(())
    }

    fn record_part(&self, datastore: &str, zone: &str, key: &str, part: i32, etag: &str) -> Result<()> {
        let k = self.object_key("multipart", datastore, zone, key);
        self.update::<MultipartDoc, ()>(&k, true, |doc| {
            let Some(mut doc) = doc else { return Ok((None, ())) };
            doc.parts.insert(part, etag.to_string());
            Ok((Some(doc), ()))
        })
    }

    fn clear_multipart(&self, datastore: &str, zone: &str, key: &str) -> Result<()> {
        let k = self.object_key("multipart", datastore, zone, key);
        self.kv.commit(Txn { checks: vec![], ops: vec![Op::Delete(k)], leader_only: true })?;
        Ok(())
    }

    fn record_replicated(&self, datastore: &str, rows: &[ReplicatedObject]) -> Result<()> {
        let ops = rows
            .iter()
            .map(|r| {
                let doc = ReplicatedDoc {
                    key: r.key.clone(),
                    etag: r.etag.clone(),
                    source_etag: r.source_etag.clone(),
                    kept: r.kept,
                };
                Op::Put(self.object_key("replicated", datastore, &r.zone, &r.key), encode(&doc))
            })
            .collect();
        self.put_chunked(ops, true)
    }

    fn replicated(&self, datastore: &str, zone: &str) -> Result<HashMap<String, ReplicatedObject>> {
        let docs: Vec<ReplicatedDoc> = self.scan_docs(&self.zone_prefix("replicated", datastore, zone))?;
        Ok(docs
            .into_iter()
            .map(|d| {
                let row = ReplicatedObject {
                    zone: zone.into(),
                    key: d.key.clone(),
                    etag: d.etag,
                    source_etag: d.source_etag,
                    kept: d.kept,
                };
                (d.key, row)
            })
            .collect())
    }

    fn forget_replicated(&self, datastore: &str, zone: &str, key: &str) -> Result<()> {
        let k = self.object_key("replicated", datastore, zone, key);
        self.kv.commit(Txn { checks: vec![], ops: vec![Op::Delete(k)], leader_only: true })?;
        Ok(())
    }

    fn replace_conflicts(&self, datastore: &str, zone: &str, rows: &[(String, String, String)]) -> Result<()> {
        // Deletes of the keys no longer in conflict, puts of the rest (a
        // transaction may not delete and put the same key).
        let prefix = self.zone_prefix("conflict", datastore, zone);
        let mut ops = Vec::new();
        let fresh: std::collections::HashSet<String> =
            rows.iter().map(|(key, _, _)| self.object_key("conflict", datastore, zone, key)).collect();
        for (k, _) in self.kv.scan(&prefix, &prefix_end(&prefix))? {
            if !fresh.contains(&k) {
                ops.push(Op::Delete(k));
            }
        }
        for (key, etag, reason) in rows {
            let doc = ConflictDoc { key: key.clone(), etag: etag.clone(), reason: reason.clone() };
            ops.push(Op::Put(self.object_key("conflict", datastore, zone, key), encode(&doc)));
        }
        self.put_chunked(ops, true)
    }

    fn conflicts(&self, datastore: &str) -> Result<Vec<(String, String, String, String)>> {
        let prefix = self.key(&format!("conflict/{}/", seg(datastore)));
        let mut out = Vec::new();
        for (k, v) in self.kv.scan(&prefix, &prefix_end(&prefix))? {
            let d: ConflictDoc = decode(&k, &v)?;
            let zone = k[prefix.len()..].split('/').next().unwrap_or_default();
            let zone = zone.replace("%2F", "/").replace("%25", "%");
            out.push((zone, d.key, d.etag, d.reason));
        }
        out.sort();
        Ok(out)
    }

    fn keep_replicated(&self, datastore: &str, zone: &str, key: &str, etag: &str) -> Result<()> {
        let k = self.object_key("replicated", datastore, zone, key);
        self.update::<ReplicatedDoc, ()>(&k, false, |doc| {
            let source_etag = doc.map_or_else(|| etag.to_string(), |d| d.source_etag);
            Ok((Some(ReplicatedDoc { key: key.into(), etag: etag.into(), source_etag, kept: true }), ()))
        })
    }

    fn publish(&self, name: &str, value: &str) -> Result<()> {
        let key = self.key(&format!("published/{}", seg(name)));
        self.kv.commit(Txn {
            checks: vec![],
            ops: vec![Op::Put(key, value.as_bytes().to_vec())],
            leader_only: true,
        })?;
        Ok(())
    }

    fn published(&self, name: &str) -> Result<Option<String>> {
        let key = self.key(&format!("published/{}", seg(name)));
        Ok(self.kv.get(&key)?.map(|v| String::from_utf8_lossy(&v.value).into_owned()))
    }
}
