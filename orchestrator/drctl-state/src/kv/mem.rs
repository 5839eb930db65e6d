//! An in-process key-value space: the store's logic without a server.

use super::{Check, Kv, Op, Txn, Versioned};
use crate::error::Result;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// An in-process [`Kv`] for the unit tests: the store's logic without a
/// server. Never a stand-in for etcd in the HA tests, which run on etcd.
#[derive(Default)]
pub struct MemKv {
    inner: Mutex<(BTreeMap<String, Versioned>, i64)>,
}

impl Kv for MemKv {
    fn location(&self) -> &str {
        "memory"
    }

    fn get(&self, key: &str) -> Result<Option<Versioned>> {
        Ok(self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.get(key).cloned())
    }

    fn scan(&self, start: &str, end: &str) -> Result<Vec<(String, Versioned)>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(inner.0.range(start.to_string()..end.to_string()).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn commit(&self, txn: Txn) -> Result<bool> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let holds = txn.checks.iter().all(|c| match c {
            Check::Absent(k) => !inner.0.contains_key(k),
            Check::Version(k, v) => inner.0.get(k).is_some_and(|x| x.version == *v),
        });
        if !holds {
            return Ok(false);
        }
        inner.1 += 1;
        let rev = inner.1;
        for op in txn.ops {
            match op {
                Op::Put(k, value) => {
                    inner.0.insert(k, Versioned { value, version: rev });
                }
                Op::Delete(k) => {
                    inner.0.remove(&k);
                }
                Op::DeleteRange(a, b) => {
                    let doomed: Vec<String> = inner.0.range(a..b).map(|(k, _)| k.clone()).collect();
                    for k in doomed {
                        inner.0.remove(&k);
                    }
                }
            }
        }
        Ok(true)
    }
}
