//! The SQLite schema, as numbered migrations.

/// Numbered schema migrations; never edit one that has shipped, add another.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: RPO samples and replication bookkeeping.
    "CREATE TABLE rpo_samples (
        datastore TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        rpo_s REAL,
        target_s REAL,
        error TEXT
     );
     CREATE INDEX rpo_samples_by_datastore ON rpo_samples (datastore, at_ms);
     CREATE TABLE replication_runs (
        id INTEGER PRIMARY KEY,
        datastore TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        copied INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        error TEXT
     );
     CREATE TABLE multipart_checkpoints (
        datastore TEXT NOT NULL,
        replica_zone TEXT NOT NULL,
        key TEXT NOT NULL,
        source_etag TEXT NOT NULL,
        upload_id TEXT NOT NULL,
        part_size INTEGER NOT NULL,
        PRIMARY KEY (datastore, replica_zone, key)
     );
     CREATE TABLE multipart_parts (
        datastore TEXT NOT NULL,
        replica_zone TEXT NOT NULL,
        key TEXT NOT NULL,
        part_number INTEGER NOT NULL,
        etag TEXT NOT NULL,
        PRIMARY KEY (datastore, replica_zone, key, part_number)
     );",
    // 2: the execution journal of failovers.
    "CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        declared_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        plan TEXT NOT NULL,
        options TEXT NOT NULL
     );
     CREATE TABLE execution_steps (
        execution_id TEXT NOT NULL REFERENCES executions(id),
        idx INTEGER NOT NULL,
        id TEXT NOT NULL,
        entity TEXT NOT NULL,
        action TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        started_ms INTEGER,
        finished_ms INTEGER,
        error TEXT,
        note TEXT,
        PRIMARY KEY (execution_id, idx)
     );
     CREATE TABLE execution_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        execution_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        step TEXT,
        kind TEXT NOT NULL,
        detail TEXT
     );
     CREATE TABLE approvals (
        execution_id TEXT NOT NULL,
        step TEXT NOT NULL,
        by TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (execution_id, step)
     );
     CREATE TABLE entity_locks (
        entity TEXT PRIMARY KEY,
        execution_id TEXT NOT NULL
     );
     CREATE TABLE placements (
        datastore TEXT PRIMARY KEY,
        primary_zone TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
     );",
    // 3: the controller: tokens, the audit log, incidents, maintenance,
    // daily uptime counters, drill results.
    "CREATE TABLE tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER,
        last_used_ms INTEGER
     );
     CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        request TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        status TEXT NOT NULL,
        services TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        resolved_ms INTEGER,
        execution_id TEXT
     );
     CREATE TABLE incident_updates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        at_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL
     );
     CREATE TABLE maintenance (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        services TEXT NOT NULL,
        starts_ms INTEGER NOT NULL,
        ends_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
     );
     CREATE TABLE uptime_days (
        service TEXT NOT NULL,
        day INTEGER NOT NULL,
        checks INTEGER NOT NULL,
        healthy INTEGER NOT NULL,
        PRIMARY KEY (service, day)
     );
     CREATE TABLE drills (
        id TEXT PRIMARY KEY,
        experiment TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        objectives_met INTEGER,
        report TEXT
     );",
    // 4: safety (docs/guide/safety.md). An approval belongs to one attempt of a step
    // and may record the step as done without running it; an execution
    // has at most one owner at a time, on a lease; each standby's lag is
    // sampled on its own, so `max_lag` is checked against the one promoted.
    "CREATE TABLE approvals_by_attempt (
        execution_id TEXT NOT NULL,
        step TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        by TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (execution_id, step, attempt)
     );
     INSERT INTO approvals_by_attempt (execution_id, step, attempt, by, at_ms)
        SELECT execution_id, step, 0, by, at_ms FROM approvals;
     DROP TABLE approvals;
     ALTER TABLE approvals_by_attempt RENAME TO approvals;
     CREATE TABLE execution_owners (
        execution_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until_ms INTEGER NOT NULL
     );
     CREATE TABLE replica_samples (
        datastore TEXT NOT NULL,
        zone TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        lag_s REAL
     );
     CREATE INDEX replica_samples_by_member ON replica_samples (datastore, zone, at_ms);",
    // 5: S3 objects replication accounts for, per zone (docs/guide/safety.md, nothing
    // lost in S3): what it never wrote or copied is never overwritten.
    "CREATE TABLE replicated_objects (
        datastore TEXT NOT NULL,
        zone TEXT NOT NULL,
        key TEXT NOT NULL,
        etag TEXT NOT NULL,
        source_etag TEXT NOT NULL,
        kept INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (datastore, zone, key)
     );",
    // 6: the conflicts the last pass found, for `status`.
    "CREATE TABLE replication_conflicts (
        datastore TEXT NOT NULL,
        zone TEXT NOT NULL,
        key TEXT NOT NULL,
        etag TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (datastore, zone, key)
     );",
    // 7: highly available controllers (docs/guide/ha-etcd.md): which controller ran a
    // step, and documents the leader publishes for every controller (the
    // latest status measurement, which followers serve).
    "ALTER TABLE execution_steps ADD COLUMN ran_by TEXT;
     CREATE TABLE published (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        at_ms INTEGER NOT NULL
     );",
    // 8: customers (docs/customers.md): a token may belong to one customer; the
    // subscriptions, the notification outbox and post-incident reports
    // live in a key-value table, the same code as on etcd
    // (`audience::SqliteKv`).
    "ALTER TABLE tokens ADD COLUMN customer TEXT;
     CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        version INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE kv_revision (n INTEGER NOT NULL);
     INSERT INTO kv_revision (n) VALUES (0);",
    // 9: nobody rewrites the audit log quietly: `INSERT OR REPLACE` deletes
    // without firing the delete trigger, so an insert is refused unless it
    // adds the next entry at the end; tokens are found by an index of
    // their hash, never by reading them all.
    "CREATE TRIGGER audit_is_append_only_insert BEFORE INSERT ON audit
        WHEN NEW.seq <> (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit)
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: entries are only added at its end'); END;
     CREATE INDEX tokens_by_hash ON tokens (hash);",
];
