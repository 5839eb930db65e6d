//! `erase`, `erasures` and `bench erasure`: the erasure operation
//! (drctl-control's `erasure` module) shown to a person. The subject is
//! never printed back: terminals are recorded too.

use crate::text::Style;
use crate::{Failure, Outcome};
use drctl_control::declare::Actor;
use drctl_control::erasure::Eraser;
use drctl_control::live::Clients;
use drctl_core::Topology;
use drctl_state::{ErasureRequest, State};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn control(e: drctl_control::Error) -> Failure {
    crate::execute::control_error(e)
}

fn when(t: Option<SystemTime>) -> String {
    t.map(drctl_control::live::rfc3339_secs).unwrap_or_else(|| "-".into())
}

fn print_copies(r: &ErasureRequest, style: &Style) {
    for c in &r.copies {
        let (mark, what) = match (c.verified_at, &c.pending) {
            (Some(at), _) => (style.green("✓"), format!("verified {}", when(Some(at)))),
            (None, Some(p)) => (style.yellow("…"), p.clone()),
            (None, None) => (style.yellow("…"), "not verified yet".into()),
        };
        let role = if c.primary { " (primary)" } else { "" };
        println!("  {mark} {}/{}{role}: {what}", c.datastore, c.zone);
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn erase(
    topo: Topology,
    state: Arc<State>,
    clients: Arc<Clients>,
    subject: &str,
    reason: &str,
    yes: bool,
    wait: Duration,
    style: &Style,
) -> Result<Outcome, Failure> {
    let file = topo.file.display().to_string();
    let eraser = Eraser::new(Arc::new(topo), state, clients);
    if !yes && std::io::stdin().is_terminal() {
        print!("Erase this subject from every copy of the datastores in `erasure:`? This cannot be undone. [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("{} not erased: nothing was recorded", style.red("✗"));
            return Ok(Outcome::Failed);
        }
    }
    // Recorded (ledger, then audit) before anything is destroyed.
    let req = eraser.request(subject, reason, &Actor::cli()).map_err(control)?;
    println!("{}", req.id);
    println!("  recorded; due {}", when(Some(req.due_at)));
    eraser.run(&req.id).await.map_err(control)?;
    let req = eraser.wait(&req.id, wait).await.map_err(control)?;
    print_copies(&req, style);
    if req.verified() {
        println!("{} {} erased and verified on {} copies", style.green("✓"), req.id, req.copies.len());
        return Ok(Outcome::Done);
    }
    let open = req.copies.iter().filter(|c| c.verified_at.is_none()).count();
    println!(
        "{} {} is recorded and erased where it could be; {open} copies are not verified yet. `drctl serve` goes on verifying; `drctl erasures --verify -f {file}` checks again now",
        style.yellow("…"),
        req.id
    );
    Ok(Outcome::ObjectiveMissed)
}

pub async fn list(
    topo: Topology,
    state: Arc<State>,
    clients: Arc<Clients>,
    json: bool,
    verify: bool,
    style: &Style,
) -> Result<Outcome, Failure> {
    let site = drctl_backup::site_dir(&topo);
    // Which backups still hold each request: read from pgBackRest, where it answers.
    let (sets, failed) = drctl_backup::held::backup_sets(&topo, &site).await;
    for f in &failed {
        eprintln!("{}", style.yellow(&format!("the backups of {f}: estimated from the retention instead")));
    }
    let eraser = Eraser::new(Arc::new(topo), state.clone(), clients).with_backups(sets);
    if verify {
        eraser.pass().await.map_err(control)?;
    }
    let (report, overdue) = eraser.report().map_err(control)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?);
    } else {
        let all = state.erasures().map_err(crate::execute::state_error)?;
        if all.is_empty() {
            println!("no erasure was requested");
        }
        let now = SystemTime::now();
        for r in &all {
            let mark = if r.overdue(now) {
                style.red("✗ OVERDUE")
            } else if r.verified() {
                style.green("✓")
            } else {
                style.yellow("…")
            };
            println!(
                "{mark} {} requested {} by {}, due {}, erased {}, verified {}",
                style.bold(&r.id),
                when(Some(r.requested_at)),
                r.who,
                when(Some(r.due_at)),
                when(r.erased_at),
                when(r.verified_at())
            );
            print_copies(r, style);
            if r.subject.is_none() {
                println!("    identifier forgotten {} (every older backup has expired)", when(r.forgotten_at));
            }
            for h in eraser.backups_holding(r).into_iter().filter(|h| h.holds(now) && r.subject.is_some()) {
                let until = match h.expires_at {
                    Some(t) => format!("until {}", when(Some(t))),
                    None => "until a newer full backup lets retention expire it".to_string(),
                };
                match &h.backup {
                    Some(set) => println!("    backup {set} of {} holds it {until}", h.datastore),
                    None => {
                        println!("    backups of {} may hold it {until} (estimated from the retention)", h.datastore)
                    }
                }
            }
        }
    }
    Ok(if overdue { Outcome::ObjectiveMissed } else { Outcome::Done })
}

/// Where the bench seeds its S3 objects, in every bucket; removed afterwards.
const BENCH_PREFIX: &str = "drctl-bench-erasure/";
/// Objects per subject, each written twice (two versions), in every bucket.
const BENCH_OBJECTS: usize = 2;
/// Subjects seeded and erased at a time (see `measure_s3`).
const BENCH_BATCH: usize = 1_000;

/// Seeds `subjects` rows into a table of its own on the topology's first
/// PostgreSQL datastore, erases each (record, erase, verify), verifies
/// what is left, replays the whole ledger as a restore would, and drops
/// the table. Where the topology also has an S3 datastore, the same
/// subjects get objects in every one of its buckets and are erased there
/// in a pass of their own (see [`bench_s3`]), so each datastore's time
/// is its own.
pub async fn bench(topo: Topology, subjects: usize) -> Result<Outcome, Failure> {
    use drctl_core::topology::erasure::{Erasure, Find, Locate};
    use drctl_core::topology::{DatastoreKind, Location};
    let Some((id, name, url)) =
        topo.datastores().find_map(|(i, e, d)| match (&d.kind, d.primary.as_ref().map(|p| &p.location)) {
            (DatastoreKind::Postgres, Some(Location::Postgres { url, .. })) => Some((i, e.name.clone(), url.clone())),
            _ => None,
        })
    else {
        return Err(Failure::bad_input(format!("{} has no PostgreSQL datastore to measure on", topo.file.display())));
    };
    let s3 = topo.datastores().find_map(|(i, e, d)| match (&d.kind, d.primary.as_ref().map(|p| &p.location)) {
        (DatastoreKind::S3, Some(Location::S3 { .. })) => Some((i, e.name.clone(), d.clone())),
        _ => None,
    });
    let whole = topo.clone();
    let clients = Arc::new(Clients::new(Default::default()));
    let s3 = match s3 {
        Some((i, n, ds)) => Some((i, n.clone(), versioned_buckets(&clients, &whole, &n, &ds).await?)),
        None => None,
    };
    let mut topo = topo;
    topo.erasure = Some(Erasure {
        deadline: Duration::from_secs(30 * 86_400),
        locate: vec![Locate {
            datastore: id,
            how: Find::Sql {
                sql: "DELETE FROM drctl_bench_erasure WHERE id = $1".into(),
                check: "SELECT count(*) FROM drctl_bench_erasure WHERE id = $1".into(),
                url: None,
            },
        }],
    });
    let dir = std::env::temp_dir().join(format!("drctl-bench-erasure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(anyhow::Error::from)?;
    let state = crate::context::open_state(&format!("sqlite://{}", dir.join("state.db").display()))?;
    let client =
        drctl_providers::postgres::connect(&url, Duration::from_secs(10)).await.map_err(anyhow::Error::from)?;
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS drctl_bench_erasure; CREATE TABLE drctl_bench_erasure (id text PRIMARY KEY, body text);\
             INSERT INTO drctl_bench_erasure SELECT 'bench-' || g, md5(g::text) FROM generate_series(0, {}) g",
            subjects.saturating_sub(1)
        ))
        .await
        .map_err(anyhow::Error::from)?;
    let topo = Arc::new(topo);
    let eraser = Eraser::new(topo.clone(), state.clone(), clients.clone());
    let who = Actor::new("bench", "bench");
    let started = SystemTime::now();
    let t = Instant::now();
    let mut ids = Vec::with_capacity(subjects);
    for i in 0..subjects {
        let r = eraser.request(&format!("bench-{i}"), "bench", &who).map_err(control)?;
        eraser.run(&r.id).await.map_err(control)?;
        ids.push(r.id);
    }
    let erase_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut verified = 0;
    for id in &ids {
        verified += usize::from(eraser.wait(id, Duration::from_secs(60)).await.map_err(control)?.verified());
    }
    let verify_s = t.elapsed().as_secs_f64();
    // A restore to before every request brings every subject back (the
    // rows seeded again stand for that copy) and replays the whole ledger.
    client
        .batch_execute(&format!(
            "INSERT INTO drctl_bench_erasure SELECT 'bench-' || g, md5(g::text) FROM generate_series(0, {}) g",
            subjects.saturating_sub(1)
        ))
        .await
        .map_err(anyhow::Error::from)?;
    let t = Instant::now();
    let replayed = eraser.replay_on(&name, &url, started - Duration::from_secs(1)).await.map_err(control)?;
    let replay_s = t.elapsed().as_secs_f64();
    let left: i64 =
        client.query_one("SELECT count(*) FROM drctl_bench_erasure", &[]).await.map_err(anyhow::Error::from)?.get(0);
    let _ = client.batch_execute("DROP TABLE drctl_bench_erasure").await;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "erasure of {subjects} subjects over {name} ({} copies each): record+erase+first check {:.1} s ({:.0}/s), \
         remaining verification {:.1} s, {verified} verified on every copy, {left} rows left; \
         ledger replay of {} requests on a copy holding every subject again {:.2} s ({} resurrected)",
        topo.erasure
            .as_ref()
            .map_or(0, |_| 1 + topo.datastores().find(|(i, _, _)| *i == id).map_or(0, |(_, _, d)| d.replicas.len())),
        erase_s,
        subjects as f64 / erase_s.max(1e-9),
        verify_s,
        replayed.requests,
        replay_s,
        replayed.resurrected
    );
    let Some((s3_id, s3_name, buckets)) = s3 else { return Ok(Outcome::Done) };
    bench_s3(whole, clients, s3_id, &s3_name, buckets, subjects).await
}

/// The buckets of the S3 datastore the bench erases on, each checked to be
/// versioned (the bench erases every version of every key) before anything
/// is seeded anywhere.
async fn versioned_buckets(
    clients: &Clients,
    topo: &Topology,
    name: &str,
    ds: &drctl_core::topology::Datastore,
) -> Result<Vec<drctl_aws::s3::Bucket>, Failure> {
    let buckets = drctl_control::live::buckets(clients, topo, ds).await;
    for b in &buckets {
        // Some S3-compatible servers (moto 5.2) answer under an XML root the
        // SDK refuses to decode: the status is read from the body then, as
        // preflight does. An answer the server gave without a status is
        // "not versioned".
        let enabled = match b.client.get_bucket_versioning().bucket(&b.name).send().await {
            Ok(v) => v.status() == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled),
            Err(e) => match e.raw_response().filter(|r| r.status().is_success()) {
                Some(r) => {
                    r.body().bytes().is_some_and(|b| String::from_utf8_lossy(b).contains("<Status>Enabled</Status>"))
                }
                None => {
                    return Err(anyhow::anyhow!(
                        "reading the versioning of bucket {} ({}): {}; check the endpoint and the credentials",
                        b.name,
                        b.zone,
                        drctl_aws::explain(&e)
                    )
                    .into())
                }
            },
        };
        if !enabled {
            return Err(Failure::bad_input(format!(
                "bucket {} ({}) of {name} is not versioned: the bench erases every version of every key; \
                 enable versioning on it (`aws s3api put-bucket-versioning --versioning-configuration Status=Enabled`)",
                b.name, b.zone
            )));
        }
    }
    Ok(buckets)
}

/// The S3 half of the bench: for each subject, [`BENCH_OBJECTS`] objects
/// of two versions each under `drctl-bench-erasure/bench-N/` in the
/// primary bucket and the same in every replica bucket (as replication
/// leaves them: each replica keeps versions of its own), then each subject
/// recorded, erased and verified on every bucket through a `locate` entry
/// of its own, and every bucket listed for any version left under the
/// bench's prefix. The prefix is emptied afterwards, whatever happened.
async fn bench_s3(
    topo: Topology,
    clients: Arc<Clients>,
    id: drctl_core::topology::EntityId,
    name: &str,
    buckets: Vec<drctl_aws::s3::Bucket>,
    subjects: usize,
) -> Result<Outcome, Failure> {
    use drctl_aws::s3_erasure;
    use drctl_core::topology::erasure::{Erasure, Find, Locate};
    let mut topo = topo;
    topo.erasure = Some(Erasure {
        deadline: Duration::from_secs(30 * 86_400),
        locate: vec![Locate { datastore: id, how: Find::Prefix(format!("{BENCH_PREFIX}{{subject}}/")) }],
    });
    let dir = std::env::temp_dir().join(format!("drctl-bench-erasure-s3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(anyhow::Error::from)?;
    let state = crate::context::open_state(&format!("sqlite://{}", dir.join("state.db").display()))?;
    let measured = measure_s3(Arc::new(topo), state, clients, &buckets, subjects).await;
    // Emptied whatever happened: the bench's objects are not the topology's.
    let mut cleanup = Ok(0);
    for b in &buckets {
        if let Err(e) = s3_erasure::erase_prefix(b, BENCH_PREFIX).await {
            cleanup = Err(format!("{} ({}): {e}", b.name, b.zone));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let m = measured?;
    if let Err(e) = cleanup {
        eprintln!("could not empty {BENCH_PREFIX} in bucket {e}; delete its versions by hand");
    }
    println!(
        "erasure of {subjects} subjects over {name} ({} buckets, {} versions per subject in each, {} in all): seeding {:.1} s; \
         record+erase+first check {:.1} s ({:.0}/s), remaining verification {:.1} s, together {:.1} s ({:.0}/s), \
         {} verified on every bucket; versions left under {BENCH_PREFIX}: {}",
        buckets.len(),
        BENCH_OBJECTS * 2,
        m.seeded,
        m.seed_s,
        m.erase_s,
        subjects as f64 / m.erase_s.max(1e-9),
        m.verify_s,
        m.erase_s + m.verify_s,
        subjects as f64 / (m.erase_s + m.verify_s).max(1e-9),
        m.verified,
        m.left.iter().map(|(b, n)| format!("{n} in {b}")).collect::<Vec<_>>().join(", ")
    );
    Ok(if m.verified == subjects && m.left.iter().all(|(_, n)| *n == 0) { Outcome::Done } else { Outcome::Failed })
}

struct S3Measured {
    /// Object versions written under the bench's prefix, every bucket together.
    seeded: u64,
    seed_s: f64,
    erase_s: f64,
    verify_s: f64,
    verified: usize,
    /// Versions and delete markers left under the bench's prefix, by bucket.
    left: Vec<(String, u64)>,
}

async fn measure_s3(
    topo: Arc<Topology>,
    state: Arc<State>,
    clients: Arc<Clients>,
    buckets: &[drctl_aws::s3::Bucket],
    subjects: usize,
) -> Result<S3Measured, Failure> {
    use futures::{StreamExt, TryStreamExt};
    for b in buckets {
        // Left by a bench that was killed: it would count as not erased.
        drctl_aws::s3_erasure::erase_prefix(b, BENCH_PREFIX).await.map_err(anyhow::Error::from)?;
    }
    let eraser = Eraser::new(topo, state, clients);
    let who = Actor::new("bench", "bench");
    let (mut seeded, mut seed_s, mut erase_s, mut verify_s, mut verified) = (0, 0.0, 0.0, 0.0, 0);
    // In batches: S3-compatible test servers (moto, the lab's endpoint)
    // list a prefix's versions in time that grows with the whole bucket,
    // which AWS does not; a batch keeps the bucket the same size whatever
    // the number of subjects, so the rate is the erasure's, not the
    // server's listing of objects the bench put there.
    for batch in (0..subjects).step_by(BENCH_BATCH) {
        let batch = batch..subjects.min(batch + BENCH_BATCH);
        let t = Instant::now();
        let puts = buckets.iter().flat_map(|b| {
            batch.clone().flat_map(move |i| {
                (0..BENCH_OBJECTS)
                    .flat_map(move |k| (1..=2).map(move |v| (b, format!("{BENCH_PREFIX}bench-{i}/object-{k}"), v)))
            })
        });
        futures::stream::iter(puts)
            .map(|(b, key, v)| async move {
                b.client
                    .put_object()
                    .bucket(&b.name)
                    .key(&key)
                    .body(aws_sdk_s3::primitives::ByteStream::from(format!("{key} version {v}").into_bytes()))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "seeding bucket {} ({}): {}",
                            b.name,
                            b.zone,
                            aws_sdk_s3::error::DisplayErrorContext(&e)
                        )
                    })
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        seed_s += t.elapsed().as_secs_f64();
        // What the erasure has to remove, counted as it will be verified: a
        // seeding that wrote nothing would otherwise look like a clean erasure.
        let mut here = 0;
        for b in buckets {
            here += drctl_aws::s3_erasure::versions_left(b, BENCH_PREFIX).await.map_err(anyhow::Error::from)?;
        }
        let expected = (buckets.len() * batch.len() * BENCH_OBJECTS * 2) as u64;
        if here != expected {
            return Err(anyhow::anyhow!(
                "seeded {here} object versions under {BENCH_PREFIX} where {expected} were written: \
                 is another bench writing to these buckets, or is versioning off?"
            )
            .into());
        }
        seeded += here;
        let t = Instant::now();
        let mut ids = Vec::with_capacity(batch.len());
        for i in batch {
            let r = eraser.request(&format!("bench-{i}"), "bench", &who).map_err(control)?;
            eraser.run(&r.id).await.map_err(control)?;
            ids.push(r.id);
        }
        erase_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for id in &ids {
            verified += usize::from(eraser.wait(id, Duration::from_secs(60)).await.map_err(control)?.verified());
        }
        verify_s += t.elapsed().as_secs_f64();
    }
    let mut left = Vec::new();
    for b in buckets {
        let n = drctl_aws::s3_erasure::versions_left(b, BENCH_PREFIX).await.map_err(anyhow::Error::from)?;
        left.push((format!("{} ({})", b.name, b.zone), n));
    }
    Ok(S3Measured { seeded, seed_s, erase_s, verify_s, verified, left })
}
