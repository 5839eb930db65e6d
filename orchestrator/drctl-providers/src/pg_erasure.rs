//! PostgreSQL's part of an erasure: run the topology's `sql` on a primary
//! with the subject as the bound parameter `$1`, note the WAL position
//! after it, and later run its `check` on each replica once that replica
//! has replayed past the position (before then, a clean answer proves
//! nothing: the delete simply has not arrived).
//!
//! The subject is never pasted into SQL. Its type follows the statement's
//! `$1`: text types take it as it is, integer types parse it; anything else
//! is refused with the cast that makes it text (`$1::text::uuid`).

use crate::postgres::{query_error, Lsn};
use crate::{redact, Error};
use tokio_postgres::types::{ToSql, Type};
pub use tokio_postgres::Client;

/// The subject as the parameter `$1` of `statement` wants it.
fn parameter(
    url: &str,
    statement: &tokio_postgres::Statement,
    subject: &str,
) -> Result<Box<dyn ToSql + Sync + Send>, Error> {
    let Some(t) = statement.params().first() else {
        return Err(Error::Refused(format!("{}: the statement has no parameter $1 for the subject", redact(url))));
    };
    let bad = |what: &str| {
        Error::Refused(format!(
            "{}: the subject is not {what}, which `$1` is here: cast it from text in the statement (`$1::text::TYPE`) if the column has another type",
            redact(url)
        ))
    };
    Ok(match *t {
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Box::new(subject.to_string()),
        Type::INT8 => Box::new(subject.trim().parse::<i64>().map_err(|_| bad("an integer"))?),
        Type::INT4 => Box::new(subject.trim().parse::<i32>().map_err(|_| bad("an integer"))?),
        Type::INT2 => Box::new(subject.trim().parse::<i16>().map_err(|_| bad("an integer"))?),
        ref other => {
            return Err(Error::Refused(format!(
                "{}: `$1` is of type {other}; drctl passes the subject as text: write `$1::text::{other}`",
                redact(url)
            )))
        }
    })
}

/// Runs `sql` with the subject as `$1`; returns the rows it changed.
pub async fn erase(client: &Client, url: &str, sql: &str, subject: &str) -> Result<u64, Error> {
    let st = client.prepare(sql).await.map_err(|e| query_error(url, "preparing the erasure", e))?;
    let p = parameter(url, &st, subject)?;
    client.execute(&st, &[&*p as &(dyn ToSql + Sync)]).await.map_err(|e| query_error(url, "erasing", e))
}

/// Like [`erase`], for a restored copy: a table the copy does not have
/// yet (restored to before it was created) holds nobody (0 rows).
pub async fn erase_in_copy(client: &Client, url: &str, sql: &str, subject: &str) -> Result<u64, Error> {
    let st = match client.prepare(sql).await {
        Ok(st) => st,
        Err(e) if undefined_table(&e) => return Ok(0),
        Err(e) => return Err(query_error(url, "preparing the erasure", e)),
    };
    let p = parameter(url, &st, subject)?;
    client.execute(&st, &[&*p as &(dyn ToSql + Sync)]).await.map_err(|e| query_error(url, "erasing", e))
}

fn undefined_table(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| d.code().code() == "42P01")
}

/// The primary's WAL position now (flushed): after an erasure committed,
/// every replica that has replayed this far has replayed the erasure.
pub async fn position(client: &Client, url: &str) -> Result<Lsn, Error> {
    let row = client
        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .await
        .map_err(|e| query_error(url, "reading the WAL position", e))?;
    Lsn::parse(row.get::<_, &str>(0)).ok_or_else(|| Error::Refused(format!("{}: unreadable WAL position", redact(url))))
}

/// What a copy said to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// A standby that has not replayed up to the erasure yet (the position it has).
    NotReplayed { replayed: Option<Lsn> },
    /// The check's answer: what is left of the subject (0: clean).
    Left(i64),
}

/// Runs `check` with the subject as `$1` on a copy, once it has replayed
/// past `after` (a standby), or at once (a primary, or no position known).
pub async fn check(client: &Client, url: &str, sql: &str, subject: &str, after: Option<Lsn>) -> Result<Checked, Error> {
    let row = client
        .query_one("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text", &[])
        .await
        .map_err(|e| query_error(url, "reading the replay position", e))?;
    let standby: bool = row.get(0);
    let replayed = row.get::<_, Option<&str>>(1).and_then(Lsn::parse);
    if let (true, Some(after)) = (standby, after) {
        if replayed.is_none_or(|r| r < after) {
            return Ok(Checked::NotReplayed { replayed });
        }
    }
    let st = match client.prepare(sql).await {
        Ok(st) => st,
        // A restored copy from before the table existed: nobody in it.
        Err(e) if undefined_table(&e) && after.is_none() => return Ok(Checked::Left(0)),
        Err(e) => return Err(query_error(url, "preparing the check", e)),
    };
    let p = parameter(url, &st, subject)?;
    let row =
        client.query_opt(&st, &[&*p as &(dyn ToSql + Sync)]).await.map_err(|e| query_error(url, "checking", e))?;
    let Some(row) = row else { return Ok(Checked::Left(0)) };
    let n = row
        .try_get::<_, i64>(0)
        .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
        .or_else(|_| row.try_get::<_, bool>(0).map(i64::from))
        .map_err(|_| {
            Error::Refused(format!(
                "{}: the check must answer a count (e.g. `SELECT count(*) ... WHERE id = $1`)",
                redact(url)
            ))
        })?;
    Ok(Checked::Left(n))
}

/// A statement prepared once for many subjects (a restore's replay of
/// the whole ledger: thousands of requests on one connection, pipelined).
pub struct Prepared {
    st: tokio_postgres::Statement,
}

/// Prepares `sql` on a restored copy; `None` when its table does not exist there (nobody in it).
pub async fn prepare_in_copy(client: &Client, url: &str, sql: &str) -> Result<Option<Prepared>, Error> {
    match client.prepare(sql).await {
        Ok(st) => Ok(Some(Prepared { st })),
        Err(e) if undefined_table(&e) => Ok(None),
        Err(e) => Err(query_error(url, "preparing", e)),
    }
}

/// Runs a prepared erasure for one subject; the rows it changed.
pub async fn erase_prepared(client: &Client, url: &str, p: &Prepared, subject: &str) -> Result<u64, Error> {
    let v = parameter(url, &p.st, subject)?;
    client.execute(&p.st, &[&*v as &(dyn ToSql + Sync)]).await.map_err(|e| query_error(url, "erasing", e))
}

/// Runs a prepared check for one subject; what is left (0: clean).
pub async fn count_prepared(client: &Client, url: &str, p: &Prepared, subject: &str) -> Result<i64, Error> {
    let v = parameter(url, &p.st, subject)?;
    let row =
        client.query_opt(&p.st, &[&*v as &(dyn ToSql + Sync)]).await.map_err(|e| query_error(url, "checking", e))?;
    Ok(row.map(|r| r.try_get::<_, i64>(0).or_else(|_| r.try_get::<_, i32>(0).map(i64::from)).unwrap_or(1)).unwrap_or(0))
}
