//! The fence ladder (docs/guide/safety.md): before a standby is promoted, every other
//! member that may take writes is fenced, and the fence is proven.
//!
//! Rung one, a member that answers: its client path is closed in SQL
//! ([`postgres::fence`]: `pg_hba.conf` rejects every client but
//! replication, sessions ended, a fresh write must fail). Rung two, a
//! member that does not answer (dead, or cut off from this controller but
//! perhaps still taking writes from clients that reach it): its `fence`
//! command, an out-of-band path such as power, a security group or an
//! agent on the host. A member neither rung can reach is not fenced, and
//! the promote does not happen unless the commander named that member
//! (`--unfenced DATASTORE/ZONE`; `--force` is not enough); the
//! preflight ([`preflight`]) refuses such a run before anything changes.

use drctl_core::topology::Topology;
use drctl_providers::postgres::{self, Fenced, Lsn, Member};
use std::time::Duration;

/// How long a member gets to answer before the ladder moves to its command.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How long a `fence` command may run.
pub(crate) const COMMAND_WITHIN: Duration = Duration::from_secs(60);

/// What the ladder did to one member.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Fenced while it answered (or already a standby, or fenced before).
    Answered(Fenced),
    /// Fenced by its command; the words are the command's.
    ByCommand(String),
    /// Not fenced: it could not be, and the commander named it `--unfenced`.
    NotFenced(String),
}

impl Outcome {
    pub(crate) fn describe(&self, zone: &str) -> String {
        match self {
            Outcome::Answered(f) => format!("{zone}: {f}"),
            Outcome::ByCommand(how) => format!("{zone}: fenced out of band ({how})"),
            Outcome::NotFenced(why) => format!("{zone}: NOT FENCED ({why}; --unfenced)"),
        }
    }
}

/// Who asks for the fence: passed to the command's environment.
pub(crate) struct Asker<'a> {
    pub datastore: &'a str,
    pub execution: &'a str,
    pub step: &'a str,
}

/// Fences one member, rung by rung. `Err` means it is not fenced and the
/// promote must not happen (unless the commander named the member
/// `--unfenced`: `unfenced`, which turns that into [`Outcome::NotFenced`]).
pub(crate) async fn fence_member(m: &Member, who: &Asker<'_>, unfenced: bool) -> Result<Outcome, String> {
    let why = format!("execution {} step {} fenced {} in {}", who.execution, who.step, who.datastore, m.zone);
    let sql = postgres::fence(&m.url, &why, ANSWER_WITHIN).await;
    let not_closed = match sql {
        Ok(f) => return Ok(Outcome::Answered(f)),
        Err(e @ (drctl_providers::Error::Connect { .. } | drctl_providers::Error::Timeout { .. })) => {
            format!("it does not answer ({e})")
        }
        // It answers, but its client path could not be closed (a privilege,
        // a read-only file system): the command is the next rung.
        Err(e) => format!("its client path could not be closed ({e})"),
    };
    match &m.fence {
        Some(argv) => match run_command(argv, m, who).await {
            Ok(how) => Ok(Outcome::ByCommand(how)),
            // Fenced neither way: the commander's named override lets the
            // run go on beside it, as for a member with no command.
            Err(e) if unfenced => Ok(Outcome::NotFenced(format!("{not_closed}, and its fence command failed: {e}"))),
            Err(e) => Err(format!("{}: {not_closed}, and its fence command failed: {e}", m.zone)),
        },
        None if unfenced => Ok(Outcome::NotFenced(format!("{not_closed} and it has no `fence` command"))),
        None => Err(format!(
            "{}: {not_closed} and it has no `fence` command: promoting now could leave two writable primaries",
            m.zone
        )),
    }
}

/// Runs a member's fence command, without a shell, with docs/guide/safety.md
/// environment. Exit 0 means fenced.
pub(crate) async fn run_command(argv: &[String], m: &Member, who: &Asker<'_>) -> Result<String, String> {
    let (prog, args) = argv.split_first().ok_or("the fence command is empty")?;
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .env("DRCTL_DATASTORE", who.datastore)
        .env("DRCTL_ZONE", &m.zone)
        .env("DRCTL_EXECUTION", who.execution)
        .env("DRCTL_STEP", who.step);
    let out = match tokio::time::timeout(COMMAND_WITHIN, cmd.output()).await {
        Err(_) => return Err(format!("`{prog}` did not finish within {}s", COMMAND_WITHIN.as_secs())),
        Ok(Err(e)) => return Err(format!("cannot run `{prog}`: {e}")),
        Ok(Ok(out)) => out,
    };
    let said = |bytes: &[u8]| String::from_utf8_lossy(bytes).lines().last().unwrap_or("").trim().to_string();
    if out.status.success() {
        let words = said(&out.stdout);
        Ok(if words.is_empty() { format!("`{prog}` exited 0") } else { format!("`{prog}`: {words}") })
    } else {
        Err(format!("`{prog}` exited {}: {}", out.status.code().unwrap_or(-1), said(&out.stderr)))
    }
}

/// After fencing an old primary that answered, waits until the standby
/// has replayed its last WAL (docs/guide/safety.md "Catching up"). `lsn` is that
/// position when the fence itself read it; `None` (fenced by an earlier
/// attempt, so not readable now) waits until the standby has replayed
/// everything it received and nothing more arrives for a moment.
pub(crate) async fn catch_up(standby: &Member, lsn: Option<Lsn>, within: Duration) -> Result<String, String> {
    match lsn {
        Some(lsn) => postgres::wait_replayed(&standby.url, lsn, within)
            .await
            .map(|took| {
                format!("{}: replayed the old primary's last WAL {lsn} in {:.2}s", standby.zone, took.as_secs_f64())
            })
            .map_err(|e| e.to_string()),
        None => postgres::wait_settled(&standby.url, within)
            .await
            .map(|(at, took)| {
                format!("{}: replayed all it received ({at}), settled in {:.2}s", standby.zone, took.as_secs_f64())
            })
            .map_err(|e| e.to_string()),
    }
}

/// How the preflight expects each member but the one to promote to be fenced.
pub(crate) enum Rung {
    /// It answers: its client path will be closed.
    Answers,
    /// It does not answer (why); its command will fence it.
    Command(String, String),
    /// It does not answer (why) and has no command: it cannot be fenced.
    Neither(String),
}

/// The fence check of the preflight: every member but the one to promote
/// answers (rung one) or has a `fence` command (rung two).
pub(crate) async fn rungs(members: &[Member], promote_in: &str) -> Vec<(String, Rung)> {
    let others: Vec<&Member> = members.iter().filter(|m| m.zone != promote_in).collect();
    let answers = futures::future::join_all(others.iter().map(|m| postgres::answers(&m.url, ANSWER_WITHIN))).await;
    others
        .into_iter()
        .zip(answers)
        .map(|(m, a)| {
            let rung = match (a, &m.fence) {
                (Ok(_), _) => Rung::Answers,
                (Err(why), Some(argv)) => Rung::Command(why, argv.first().cloned().unwrap_or_default()),
                (Err(why), None) => Rung::Neither(why),
            };
            (m.zone.clone(), rung)
        })
        .collect()
}

/// The members of a postgres datastore, with its `max_lag` and `catch_up`.
pub(crate) fn pg_datastore(topo: &Topology, name: &str) -> Option<(Vec<Member>, Option<Duration>, Duration)> {
    let e = topo.entity(topo.entity_id(name)?);
    let drctl_core::topology::EntitySpec::Datastore(d) = &e.spec else { return None };
    if d.kind != drctl_core::topology::DatastoreKind::Postgres {
        return None;
    }
    let catch_up = e.failover.catch_up.unwrap_or(Duration::from_secs(30));
    Some((crate::live::postgres_members(topo, d), e.failover.max_lag, catch_up))
}

/// The fence checks of a promote (or of a restore that puts a copy in the
/// primary's place): every member of `name` but the one in `except` answers
/// (its client path will be closed) or has a `fence` command, or is named
/// `--unfenced` by the commander. Changes nothing.
pub(crate) async fn fence_checks(
    overrides: &crate::overrides::Overrides,
    subject: &str,
    name: &str,
    members: &[Member],
    except: &str,
) -> Vec<crate::declaration::Check> {
    let mut checks = Vec::new();
    for (zone, rung) in rungs(members, except).await {
        let check = match rung {
            Rung::Answers => crate::declaration::Check {
                subject: subject.into(),
                ok: true,
                detail: format!("the {name} member in {zone} answers: it will be fenced by closing its client path"),
            },
            Rung::Command(why, prog) => crate::declaration::Check {
                subject: subject.into(),
                ok: true,
                detail: format!(
                    "the {name} member in {zone} does not answer ({why}): it will be fenced by its command `{prog}`"
                ),
            },
            Rung::Neither(why) => {
                let detail = format!(
                    "the {name} member in {zone} does not answer ({why}) and has no `fence` command: promoting now could leave two writable primaries (it may still be running, cut off from here)"
                );
                let flag = crate::overrides::unfenced_flag(name, &zone);
                if overrides.unfenced(name, &zone) {
                    crate::declaration::Check {
                        subject: subject.into(),
                        ok: true,
                        detail: format!("{detail}; {flag}: it will NOT be fenced"),
                    }
                } else {
                    crate::declaration::Check {
                        subject: subject.into(),
                        ok: false,
                        detail: format!(
                            "{detail}. Give it `fence: {{ command: [...] }}`, or promote beside it with `{flag}`; nothing was changed"
                        ),
                    }
                }
            }
        };
        checks.push(check);
    }
    checks
}

/// The fence checks of a restore that puts a restored copy in the place of
/// `name`'s primary (docs/restore.md): the copy becomes the one writable
/// primary, so every member must be fenceable exactly as for a promote
/// (it answers, or it has a `fence` command), or be named `--unfenced` in
/// `overrides`. `None` when `name` is not a postgres datastore. Changes nothing.
pub async fn replace_checks(
    topo: &Topology,
    name: &str,
    overrides: &crate::overrides::Overrides,
    subject: &str,
) -> Option<Vec<crate::declaration::Check>> {
    let (members, _, _) = pg_datastore(topo, name)?;
    // No member is exempt: the copy is none of them.
    Some(fence_checks(overrides, subject, name, &members, "").await)
}

/// Fences every member of `name` through the ladder a promote uses, for a
/// restore that replaces its primary; the member in `last` (the primary)
/// last, so that a member that cannot be fenced stops the run while the
/// primary still serves. Idempotent: a member fenced before answers
/// `already fenced`, a standby has nothing to fence. One line per member;
/// `Err` names the member that could not be fenced, and the override that
/// would let the restore go on beside it.
pub async fn fence_all(
    topo: &Topology,
    name: &str,
    last: &str,
    overrides: &crate::overrides::Overrides,
    execution: &str,
    step: &str,
) -> Result<Vec<String>, String> {
    let (mut members, _, _) =
        pg_datastore(topo, name).ok_or_else(|| format!("`{name}` is not a postgres datastore"))?;
    members.sort_by_key(|m| m.zone == last);
    let who = Asker { datastore: name, execution, step };
    let mut notes = Vec::new();
    for m in &members {
        let outcome = fence_member(m, &who, overrides.unfenced(name, &m.zone)).await.map_err(|why| {
            format!(
                "{why}. The restored copy does not serve; members fenced before it stay fenced (the primary is fenced last). Fence it, or go on beside it with `{}`",
                crate::overrides::unfenced_flag(name, &m.zone)
            )
        })?;
        tracing::info!(execution, datastore = name, zone = %m.zone, outcome = %outcome.describe(&m.zone), "fence");
        notes.push(outcome.describe(&m.zone));
    }
    Ok(notes)
}
