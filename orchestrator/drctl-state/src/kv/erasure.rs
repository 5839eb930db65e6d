//! The erasure ledger on the key-value space: each request one document
//! (`erasure/SEQ`), sealed under the store's data key.

use super::{Check, Kv, KvStore, Op, Txn};
use crate::error::{Error, Result};
use crate::model::erasure::{ErasureRequest, Erasures};

fn seq_of(id: &str) -> Result<u64> {
    id.strip_prefix("er-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::Invalid(format!("`{id}` is not an erasure id (they look like er-12)")))
}

impl<K: Kv> KvStore<K> {
    fn erasure_key(&self, seq: u64) -> String {
        self.key(&format!("erasure/{seq:012}"))
    }
}

impl<K: Kv> Erasures for KvStore<K> {
    fn create_erasure(&self, draft: &ErasureRequest) -> Result<ErasureRequest> {
        self.retry(|| {
            let (n, check, op) = self.next_seq("erasure")?;
            let mut req = draft.clone();
            req.id = format!("er-{n}");
            let key = self.erasure_key(n as u64);
            let ok = self.kv().commit(Txn {
                checks: vec![check, Check::Absent(key.clone())],
                ops: vec![op, Op::Put(key, self.seal_doc(&req))],
                leader_only: false,
            })?;
            Ok(ok.then_some(req))
        })
    }

    fn erasure(&self, id: &str) -> Result<Option<ErasureRequest>> {
        let key = self.erasure_key(seq_of(id)?);
        match self.kv().get(&key)? {
            Some(v) => Ok(Some(self.open_doc(&key, &v)?)),
            None => Ok(None),
        }
    }

    fn erasures(&self) -> Result<Vec<ErasureRequest>> {
        let prefix = self.key("erasure/");
        self.kv().scan(&prefix, &super::prefix_end(&prefix))?.iter().map(|(k, v)| self.open_doc(k, v)).collect()
    }

    fn update_erasure(&self, id: &str, change: &mut dyn FnMut(&mut ErasureRequest)) -> Result<ErasureRequest> {
        let key = self.erasure_key(seq_of(id)?);
        self.retry(|| {
            let Some(v) = self.kv().get(&key)? else {
                return Err(Error::Invalid(format!("there is no erasure request {id}")));
            };
            let mut req: ErasureRequest = self.open_doc(&key, &v)?;
            change(&mut req);
            let ok = self.kv().commit(Txn {
                checks: vec![Check::Version(key.clone(), v.version)],
                ops: vec![Op::Put(key.clone(), self.seal_doc(&req))],
                leader_only: false,
            })?;
            Ok(ok.then_some(req))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemKv;
    use std::time::Duration;

    #[test]
    fn requests_are_numbered_sealed_and_updated_whole() {
        let store = KvStore::new(MemKv::default(), "/t/").unwrap();
        let a = store.create_erasure(&crate::model::erasure::sample_request("customer-4711")).unwrap();
        let b = store.create_erasure(&crate::model::erasure::sample_request("customer-4712")).unwrap();
        assert_eq!((a.id.as_str(), b.id.as_str()), ("er-1", "er-2"));
        for (_, v) in store.kv().scan("/t/erasure/", "/t/erasure0").unwrap() {
            assert!(crate::seal::Sealer::is_sealed(&v.value));
            assert!(!v.value.windows(8).any(|w| w == b"customer"), "no identifier in clear");
        }
        let now = a.requested_at + Duration::from_secs(5);
        let after = store
            .update_erasure("er-1", &mut |r| {
                r.copies[0].verified_at = Some(now);
                r.forget(now);
            })
            .unwrap();
        assert!(after.verified() && after.subject.is_none());
        assert_eq!(store.erasure("er-1").unwrap().unwrap(), after);
        assert_eq!(store.erasures().unwrap().len(), 2);
        assert!(!after.overdue(after.due_at + Duration::from_secs(1)), "verified in time");
        assert!(b.overdue(b.due_at + Duration::from_secs(1)));
        assert!(store.erasure("er-x").is_err());
    }
}
