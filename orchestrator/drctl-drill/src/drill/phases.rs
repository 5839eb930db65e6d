//! One drill, phase by phase. [`run`] reads as the drill does: steady
//! state, then the act (inject, probe, detect, declare, watch the
//! execution, until it ends or a stop condition holds), then stop what
//! still runs, measure what was lost, heal, watch recovery, check safety,
//! report. Each phase is a method of [`Drill`], which holds what the
//! phases share (the drill's clock, its timeline, the faults in force,
//! the probes, the execution).

use super::detect::{detect_scope, Probe};
use super::inject::Injector;
use super::owned_failover::Failover;
use super::*;
use drctl_core::chaos::Recover;

/// Runs the drill; heals on every path out, including cancellation.
pub async fn run(opts: Options) -> Result<Report, Error> {
    if opts.experiment.declare == DeclareMode::Controllers && (opts.controllers.is_empty() || opts.token.is_none()) {
        return Err(Error::BadInput(format!(
            "{} declares through highly available controllers: run it with `drctl drill --lab` (which starts one per zone on etcd)",
            opts.experiment.file.display()
        )));
    }
    if opts.experiment.recover == Recover::Restore {
        super::recover::preflight(&opts).await?;
    }
    let before = steady_state(&opts).await?;
    let mut drill = Drill::new(&opts);
    let outcome = drill.act().await;
    drill.stop_execution().await;
    // Measured before healing: healing restarts old primaries.
    let mut measured = drill.measure(&before).await;
    drill.heal().await;
    outcome?;
    drill.watch_recovery().await;
    drill.check_safety(&mut measured.datastores).await;
    Ok(drill.report(measured))
}

/// Phase 1: every service healthy and every datastore within its RPO
/// target for [`STEADY_FOR`]; refused after [`Options::steady_timeout`].
/// Returns the last measurement (the lag just before the fault).
async fn steady_state(opts: &Options) -> Result<StatusReport, Error> {
    let deadline = Instant::now() + opts.steady_timeout + STEADY_FOR;
    let mut steady_since: Option<Instant> = None;
    let before = loop {
        let placements = opts.state.placements().unwrap_or_default();
        let at = opts.clock.now();
        let st = drctl_control::live::status(&opts.clients, &opts.topology, &placements, at).await;
        // Recorded like the controller does: if a primary dies, the
        // preflight judges its standby by the last sample.
        let _ = drctl_control::live::record(&*opts.state, &st, at);
        let mut problems = Vec::new();
        for d in &st.datastores {
            if let Some(e) = &d.error {
                problems.push(format!("{}: {e}", d.name));
            } else if !d.meets_rpo {
                problems.push(format!("{}: RPO {:.1}s over its target", d.name, d.rpo_s.unwrap_or(f64::NAN)));
            }
        }
        for s in &st.services {
            if !s.healthy {
                problems.push(format!("{}: unhealthy", s.name));
            }
        }
        if problems.is_empty() {
            let since = *steady_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= STEADY_FOR {
                break st;
            }
        } else {
            steady_since = None;
        }
        if !problems.is_empty() && Instant::now() >= deadline {
            return Err(Error::Unsteady(problems.join("; ")));
        }
        opts.clock.sleep(Duration::from_millis(500)).await;
    };
    (opts.say)(&format!(
        "steady state for {}s: every service healthy, every datastore within its RPO target",
        STEADY_FOR.as_secs()
    ));
    Ok(before)
}

/// What the measuring phase found, for the report.
struct Measured {
    datastores: Vec<DatastoreResult>,
    plan_steps: Vec<drctl_core::plan::Step>,
    journal: Vec<drctl_state::journal::StepRow>,
}

/// Whether the act goes on after a phase.
enum Flow {
    Continue,
    Stop,
}

/// A drill under way; see the module documentation.
struct Drill<'a> {
    opts: &'a Options,
    id: String,
    clock: Clock,
    injector: Injector<'a>,
    http: reqwest::Client,
    timeline: Vec<TimelineEvent>,
    /// Each fault, the lab's id for it once injected, and when it is due.
    faults: Vec<(FaultRecord, Option<u64>, Duration)>,
    probes: Vec<Probe>,
    detected_at: Option<f64>,
    declared_at: Option<f64>,
    execution: Option<String>,
    /// The failover, when this process executes it: owned, so an aborted
    /// drill aborts it (see `owned_failover`).
    exec_task: Option<Failover>,
    /// The execution's final state, once it ended.
    exec_done: Option<String>,
    scope: Option<serde_json::Value>,
    stopped_early: Option<String>,
    /// What broke safety, in words.
    safety_violations: Vec<String>,
    undetermined_logged: bool,
    /// The preflight's checks, (subject, what it said): the lag it judged
    /// and the bound it printed go in the report.
    preflight: Vec<(String, String)>,
    /// `recover: restore`: each damaged datastore and the moment just
    /// before its first fault (the point it is restored to).
    points: Vec<(String, SystemTime)>,
    /// `recover: restore`: each restore, once run.
    restores: Vec<(String, super::recover::Outcome)>,
    /// `recover: restore`: when the last restore ended, every one of them
    /// having succeeded (the drill's recovery, when no service was down).
    restored_at: Option<f64>,
}

impl<'a> Drill<'a> {
    fn new(opts: &'a Options) -> Drill<'a> {
        let faults = opts
            .experiment
            .faults
            .iter()
            .map(|f| {
                let req = FaultRequest::from(&f.fault);
                let record = FaultRecord {
                    kind: kind_of(&req),
                    fault: req,
                    hits: Vec::new(),
                    injected_at_s: None,
                    healed_at_s: None,
                };
                (record, None, f.after)
            })
            .collect();
        Drill {
            opts,
            id: opts.id.clone().unwrap_or_else(failover::new_id),
            clock: Clock::start(opts.clock.clone()),
            injector: Injector { lab: opts.lab.as_ref(), topo: &opts.topology, cut: Default::default() },
            http: opts.clients.http().clone(),
            timeline: vec![TimelineEvent { at_s: 0.0, kind: "steady".into(), what: "steady state verified".into() }],
            faults,
            probes: Probe::of(&opts.topology),
            detected_at: None,
            declared_at: None,
            execution: None,
            exec_task: None,
            exec_done: None,
            scope: None,
            stopped_early: None,
            safety_violations: Vec::new(),
            undetermined_logged: false,
            preflight: Vec::new(),
            points: Vec::new(),
            restores: Vec::new(),
            restored_at: None,
        }
    }

    fn say(&self, line: &str) {
        (self.opts.say)(line)
    }

    /// Adds to the timeline, at `at_s` on the drill's clock.
    fn event(&mut self, at_s: f64, kind: &str, what: String) {
        self.timeline.push(TimelineEvent { at_s, kind: kind.into(), what });
    }

    fn first_fault(&self) -> Option<f64> {
        self.faults.iter().filter_map(|f| f.0.injected_at_s).reduce(f64::min)
    }

    /// Phases 2–4, every [`PROBE_INTERVAL`] until the execution ends with
    /// every service healthy, the execution fails, the experiment's
    /// duration is over, a `stop_when` holds or the operator interrupts.
    async fn act(&mut self) -> Result<(), Error> {
        let cancel = self.opts.cancel.clone();
        let mut last_stop_check = Instant::now();
        loop {
            if cancel.is_cancelled() {
                self.stopped_early = Some("interrupted by the operator".into());
                self.say("interrupted: healing and reporting");
                return Ok(());
            }
            self.inject_due().await?;
            self.probe().await;
            let outage = self.detect();
            if opts_recover_restore(self.opts) {
                if let Flow::Stop = self.restore_due().await {
                    return Ok(());
                }
            } else if let Flow::Stop = self.declare(&outage).await? {
                return Ok(());
            }
            self.notice_manual_declaration();
            self.watch_execution().await;
            if last_stop_check.elapsed() >= Duration::from_secs(1) && self.first_fault().is_some() {
                last_stop_check = Instant::now();
                if let Flow::Stop = self.check_stop_when().await {
                    return Ok(());
                }
            }
            let all_injected = self.faults.iter().all(|f| f.0.injected_at_s.is_some());
            let all_healthy = self.probes.iter().all(|p| p.healthy_now);
            if self.exec_done.is_some() && all_healthy {
                return Ok(());
            }
            if self.exec_done.as_deref().is_some_and(|s| s != exec_state::SUCCEEDED) {
                return Ok(());
            }
            if self.clock.now() >= self.opts.experiment.duration.as_secs_f64() && all_injected {
                self.say(&format!("{:>6.2}s  the experiment's duration is over", self.clock.now()));
                return Ok(());
            }
            tokio::select! {
                _ = self.opts.clock.sleep(PROBE_INTERVAL) => {}
                _ = cancel.cancelled() => {}
            }
        }
    }

    /// Phase 2: injects each fault that is due.
    async fn inject_due(&mut self) -> Result<(), Error> {
        let now = self.clock.now();
        for i in 0..self.faults.len() {
            let (rec, _, after) = &self.faults[i];
            if rec.injected_at_s.is_some() || now < after.as_secs_f64() {
                continue;
            }
            if let Some(ds) = super::recover::damaged(&rec.fault) {
                if !self.points.iter().any(|(d, _)| d == ds) {
                    self.points.push((ds.to_string(), self.clock.wall()));
                }
            }
            let (fid, hits) = self.injector.inject(&rec.fault).await?;
            let at = self.clock.now();
            let (rec, id, _) = &mut self.faults[i];
            rec.injected_at_s = Some(at);
            *id = fid;
            rec.hits = hits;
            let what = format!("{}: {}", rec.kind, rec.hits.join("; "));
            self.say(&format!("{at:>6.2}s  injected {what}"));
            self.event(at, "fault", what);
        }
        Ok(())
    }

    /// Every service's health check once, at the same time.
    async fn check_all(&self) -> Vec<Result<(), String>> {
        let checks = self.probes.iter().map(|p| drctl_providers::http::check(&self.http, &p.url, p.timeout));
        futures::future::join_all(checks).await
    }

    /// Phase 3a: checks every service's health once.
    async fn probe(&mut self) {
        let results = self.check_all().await;
        let at = self.clock.now();
        let faulted = self.first_fault().is_some();
        let mut events = Vec::new();
        for (p, r) in self.probes.iter_mut().zip(results) {
            match r {
                Ok(()) => {
                    p.fails = 0;
                    if !p.healthy_now && p.unhealthy_at.is_some() {
                        p.recovered_at = Some(at);
                        events.push(("recovered", format!("{} healthy", p.name), format!("{} healthy again", p.name)));
                    }
                    p.healthy_now = true;
                }
                Err(why) => {
                    p.fails += 1;
                    if p.healthy_now && faulted {
                        p.healthy_now = false;
                        p.recovered_at = None;
                        if p.unhealthy_at.is_none() {
                            p.unhealthy_at = Some(at);
                        }
                        events.push((
                            "unhealthy",
                            format!("{}: {why}", p.name),
                            format!("{} unhealthy: {why}", p.name),
                        ));
                    }
                }
            }
        }
        for (kind, what, line) in events {
            self.say(&format!("{at:>6.2}s  {line}"));
            self.event(at, kind, what);
        }
    }

    /// Phase 3b: an outage is [`DETECT_FAILURES`] failed checks in a row
    /// after a fault. Returns the services down.
    fn detect(&mut self) -> Vec<String> {
        let outage: Vec<String> =
            self.probes.iter().filter(|p| p.fails >= DETECT_FAILURES).map(|p| p.name.clone()).collect();
        if self.detected_at.is_none() && !outage.is_empty() && self.first_fault().is_some() {
            let at = self.clock.now();
            self.detected_at = Some(at);
            self.say(&format!("{at:>6.2}s  detected: {} failed {DETECT_FAILURES} checks in a row", outage.join(", ")));
            self.event(at, "detected", format!("{} down", outage.join(", ")));
        }
        outage
    }

    /// Phase 4 (`declare: auto|controllers`): once an outage is detected,
    /// finds what was lost and declares it, through the one declarer (or
    /// through the controllers). A refusal stops the drill.
    async fn declare(&mut self, outage: &[String]) -> Result<Flow, Error> {
        let opts = self.opts;
        let due = match opts.experiment.declare {
            DeclareMode::Auto | DeclareMode::Controllers => self.detected_at.is_some(),
            // As a person would: that long after the fault, whatever was detected.
            DeclareMode::After(after) => {
                self.first_fault().is_some_and(|f| self.clock.now() >= f + after.as_secs_f64())
            }
            DeclareMode::Manual => false,
        };
        if !due || self.execution.is_some() {
            return Ok(Flow::Continue);
        }
        let (zones, targets) = detect_scope(&opts.topology, &*opts.state).await;
        if zones.is_empty() && targets.is_empty() {
            if !self.undetermined_logged {
                self.undetermined_logged = true;
                let at = self.clock.now();
                self.say(&format!("{at:>6.2}s  no zone or primary is lost: nothing to fail over, watching"));
                self.event(at, "note", "no zone or primary lost: not declared".into());
            }
            return Ok(Flow::Continue);
        }
        let decl = Declaration {
            zones: zones.clone(),
            regions: Vec::new(),
            targets: targets.clone(),
            reason: format!("drill {}: {} unhealthy", opts.experiment.name, outage.join(", ")),
            overrides: Default::default(),
            parallel: opts.parallel,
        };
        self.scope = Some(serde_json::json!({ "zones": zones, "regions": [], "targets": targets }));
        let accepted = if let (false, Some(token)) = (opts.controllers.is_empty(), &opts.token) {
            let body = serde_json::json!({
                "zones": zones, "targets": targets, "reason": decl.reason, "parallel": decl.parallel,
            });
            match declare_via_controllers(&opts.controllers, token, &body).await {
                Ok(Some((exec_id, via))) => (exec_id, Some(via)),
                Ok(None) => {
                    self.say(&format!("{:>6.2}s  no controller takes declarations yet", self.clock.now()));
                    return Ok(Flow::Continue);
                }
                Err(why) => {
                    self.stopped_early = Some(why);
                    return Ok(Flow::Stop);
                }
            }
        } else {
            let declarer = Declarer::new(opts.topology.clone(), opts.state.clone(), opts.clients.clone())
                .with_clock(opts.clock.clone());
            let proposal = declarer.propose(decl, Some(format!("{}-failover", self.id))).await?;
            for c in &proposal.prepared.checks {
                self.say(&format!("          check {} {}: {}", if c.ok { "ok " } else { "NO " }, c.subject, c.detail));
            }
            self.preflight = proposal.prepared.checks.iter().map(|c| (c.subject.clone(), c.detail.clone())).collect();
            let who = Actor::new("drill", "controller");
            // The drill announces itself; its failover opens no incident of its own.
            if declarer.record(&proposal, &who, false, IncidentPolicy::None)? == Recorded::Refused {
                self.stopped_early = Some(format!("the declaration was refused: {}", proposal.refusals().join("; ")));
                return Ok(Flow::Stop);
            }
            self.exec_task = Some(Failover::start(declarer, opts.state.clone(), proposal.id.clone()));
            (proposal.id, None)
        };
        let (exec_id, via) = accepted;
        let at = self.clock.now();
        self.declared_at = Some(at);
        let through = via.as_deref().map(|v| format!(" through {v}")).unwrap_or_default();
        self.say(&format!(
            "{at:>6.2}s  declared {exec_id}{through}: zones [{}] targets [{}]",
            zones.join(", "),
            targets.join(", ")
        ));
        let what = match via {
            Some(_) => format!("execution {exec_id}, through the controllers"),
            None => format!("execution {exec_id}"),
        };
        self.event(at, "declared", what);
        self.execution = Some(exec_id);
        Ok(Flow::Continue)
    }

    /// Phase 4 (`recover: restore`): once every fault is in and the
    /// experiment's `declare: { after }` has passed (a second by default:
    /// writes keep coming after the damage, as they do on the real day),
    /// each damaged datastore is restored in place to the moment just
    /// before its first fault. The act ends with the restores.
    async fn restore_due(&mut self) -> Flow {
        let Some(last) = self.faults.iter().map(|f| f.0.injected_at_s).try_fold(0f64, |m, t| t.map(|t| m.max(t)))
        else {
            return Flow::Continue;
        };
        let wait = match self.opts.experiment.declare {
            DeclareMode::After(d) => d.as_secs_f64(),
            _ => 1.0,
        };
        if self.clock.now() < last + wait {
            return Flow::Continue;
        }
        let at = self.clock.now();
        self.declared_at = Some(at);
        for (ds, point) in self.points.clone() {
            let to = drctl_backup::restore::rfc3339(point);
            self.say(&format!("{at:>6.2}s  restoring {ds} in place to {to}, the moment before the fault"));
            self.event(self.clock.now(), "declared", format!("restore {ds} --to {to} --replace"));
            let reason = format!("drill {}: {ds} damaged by a logical fault", self.opts.experiment.name);
            let out = super::recover::restore(self.opts, &ds, point, &reason).await;
            let done = self.clock.now();
            let what = match out.json["error"].as_str() {
                Some(e) => format!("{ds}: restore failed: {e}"),
                None => format!(
                    "{ds}: restored in {:.2}s; {} of {} writes from before the fault back, {} made after it given up",
                    out.json["restore_s"].as_f64().unwrap_or_default(),
                    out.json["came_back"],
                    out.json["acknowledged_before_point"],
                    out.json["lost_writes"]
                ),
            };
            self.say(&format!("{done:>6.2}s  {what}"));
            self.event(done, "executed", what);
            if self.execution.is_none() && !out.execution.is_empty() {
                self.execution = Some(out.execution.clone());
            }
            if out.json["error"].is_string() {
                self.stopped_early.get_or_insert(format!(
                    "the restore of {ds} failed: {}",
                    out.json["error"].as_str().unwrap_or_default()
                ));
            }
            self.exec_done = Some(match &self.exec_done {
                Some(s) if s != exec_state::SUCCEEDED => s.clone(),
                _ => out.state.clone(),
            });
            self.restores.push((ds, out));
        }
        if !self.restores.is_empty() && self.restores.iter().all(|(_, o)| o.ok) {
            self.restored_at = Some(self.clock.now());
        }
        Flow::Stop
    }

    /// Phase 4 (`declare: manual`): notices the declaration an operator
    /// made from another terminal after the first fault.
    fn notice_manual_declaration(&mut self) {
        let opts = self.opts;
        if opts.experiment.declare != DeclareMode::Manual || self.execution.is_some() || self.first_fault().is_none() {
            return;
        }
        let Ok(rows) = opts.state.executions() else { return };
        let Some(r) = rows.iter().find(|r| r.declared_at >= self.clock.wall0) else { return };
        let at = self.clock.of(r.declared_at);
        self.declared_at = Some(at);
        self.scope = serde_json::from_str::<serde_json::Value>(&r.options).ok();
        self.say(&format!("{at:>6.2}s  declared by an operator: {}", r.id));
        self.event(at, "declared", format!("execution {}", r.id));
        self.execution = Some(r.id.clone());
    }

    /// Phase 4, continued: notes the execution's end.
    async fn watch_execution(&mut self) {
        let (Some(eid), None) = (self.execution.clone(), &self.exec_done) else { return };
        let finished = match &self.exec_task {
            Some(t) => t.is_finished(),
            None => self
                .opts
                .state
                .execution(&eid)
                .map(|r| exec_state::is_final(&r.state) || r.state == exec_state::PAUSED)
                .unwrap_or(false),
        };
        if !finished {
            return;
        }
        if let Some(mut t) = self.exec_task.take() {
            match t.task().await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => self.say(&format!("          execution error: {e}")),
                Err(e) => self.say(&format!("          execution task: {e}")),
            }
        }
        let mut st = self.opts.state.execution(&eid).map(|r| r.state).unwrap_or_else(|_| "unknown".into());
        if st == exec_state::PAUSED {
            // Nobody stands by a drill to decide: the failed step ends it,
            // aborted through the journal like any commander's abort, and
            // the report says why.
            let failed: Vec<String> = self
                .opts
                .state
                .steps(&eid)
                .unwrap_or_default()
                .into_iter()
                .filter(|s| s.state == drctl_state::journal::StepState::Failed)
                .map(|s| format!("{} failed: {}", s.id, s.error.unwrap_or_default()))
                .collect();
            let why = format!("the execution paused ({}); the drill aborted it", failed.join("; "));
            self.say(&format!("{:>6.2}s  {why}", self.clock.now()));
            let who = Actor::new("drill", "controller");
            match drctl_control::declare::abort(&*self.opts.state, &eid, &who) {
                Ok(now) => st = now,
                Err(e) => self.say(&format!("          could not abort {eid}: {e}")),
            }
            self.stopped_early.get_or_insert(why);
        }
        let at = self.clock.now();
        self.say(&format!("{at:>6.2}s  execution {eid} {st}"));
        self.event(at, "executed", format!("execution {st}"));
        self.exec_done = Some(st);
    }

    /// The experiment's `stop_when`: an RPO or an outage past its bound.
    async fn check_stop_when(&mut self) -> Flow {
        let opts = self.opts;
        let why = check_stop_when(
            &opts.experiment.stop_when,
            &opts.clients,
            &opts.topology,
            &*opts.state,
            &self.probes,
            &self.clock,
        )
        .await;
        let Some(why) = why else { return Flow::Continue };
        let at = self.clock.now();
        self.say(&format!("{at:>6.2}s  stop_when: {why}"));
        self.event(at, "stopped", why.clone());
        self.stopped_early = Some(why);
        Flow::Stop
    }

    /// An execution still running when the act ends is asked to stop;
    /// healing must not start under a failover still acting.
    async fn stop_execution(&mut self) {
        let (Some(eid), None) = (self.execution.clone(), &self.exec_done) else { return };
        if let Ok(s) = self.opts.state.request_abort(&eid) {
            self.say(&format!("{:>6.2}s  execution {eid} still running: abort requested ({s})", self.clock.now()));
        }
        if let Some(mut t) = self.exec_task.take() {
            // Past the grace period the task is cancelled, and awaited, so
            // nothing it started outlives this point. The journal says
            // where it stopped.
            if tokio::time::timeout(Duration::from_secs(30), t.task()).await.is_err() {
                t.task().abort();
                let _ = t.task().await;
                self.say(&format!(
                    "{:>6.2}s  execution {eid} cancelled after 30 s; its journal says where it stopped",
                    self.clock.now()
                ));
            }
        }
    }

    /// Phase 5: per datastore, what the failover lost: counted from the
    /// lab workload's acknowledgements where it writes, else the lag
    /// measured just before the fault.
    async fn measure(&self, before: &StatusReport) -> Measured {
        let opts = self.opts;
        let plan_steps: Vec<drctl_core::plan::Step> = self
            .execution
            .as_ref()
            .and_then(|e| opts.state.execution(e).ok())
            .and_then(|r| serde_json::from_str::<drctl_core::plan::Plan>(&r.plan).ok())
            .map(|p| p.steps)
            .unwrap_or_default();
        let journal = self.execution.as_ref().and_then(|e| opts.state.steps(e).ok()).unwrap_or_default();
        let mut datastores = Vec::new();
        for (_, e, d) in opts.topology.datastores() {
            let failed_over_to =
                plan_steps.iter().filter(|s| s.entity == e.name).filter_map(|s| s.to_zone.clone()).next().filter(
                    |_| {
                        journal
                            .iter()
                            .filter(|s| s.entity == e.name)
                            .all(|s| s.state == drctl_state::journal::StepState::Succeeded)
                            && journal.iter().any(|s| s.entity == e.name)
                    },
                );
            let lag_before = before.datastores.iter().find(|x| x.name == e.name).and_then(|x| x.rpo_s);
            let target = e.targets.rpo.map(|t| t.as_secs_f64());
            let counted = matches!(e.name.as_str(), "orders-db" | "assets") && opts.lab.is_some();
            let (rpo, lost, elsewhere, how) = match (&opts.lab, &failed_over_to) {
                (Some(lab), Some(z)) if counted => match lab.loss(&e.name, z).await {
                    Ok(l) => (
                        Some(l.rpo_s),
                        Some(l.lost_writes),
                        Some(l.acknowledged_elsewhere),
                        format!("counted: acknowledged writes missing from the new primary in {z}"),
                    ),
                    Err(err) => (None, None, None, format!("could not count: {err}")),
                },
                (Some(_), None) if counted => {
                    (Some(0.0), Some(0), None, "no failover: the primary kept every write".into())
                }
                (_, Some(_)) => (lag_before, None, None, "estimated: the lag measured just before the fault".into()),
                (_, None) => (Some(0.0), None, None, "no failover".into()),
            };
            // A restored datastore: judged against the restore objective.
            let restored = self.restores.iter().find(|(d, _)| *d == e.name).map(|(_, o)| o);
            let (rpo, lost, elsewhere, how, target) = match restored {
                Some(o) => (
                    o.recovery_point_error_s,
                    o.lost_writes,
                    o.json["acknowledged_before_point"].as_u64(),
                    "restored in place to the moment before the fault; counted: acknowledged writes made after it that the restore gave up".to_string(),
                    opts.topology.entity_id(&e.name).and_then(|i| opts.topology.restore_targets(i).rpo).map(|t| t.as_secs_f64()),
                ),
                None => (rpo, lost, elsewhere, how, target),
            };
            let meets = match (rpo, target) {
                (Some(r), Some(t)) => r <= t,
                (Some(_), None) => true,
                (None, _) => false,
            };
            datastores.push(DatastoreResult {
                name: e.name.clone(),
                kind: d.kind.as_str().to_string(),
                failed_over_to,
                rpo_s: rpo,
                rpo_target_s: target,
                meets_rpo: meets,
                lost_writes: lost,
                acknowledged_elsewhere: elsewhere,
                writable_primaries_max: None,
                split_brain_writes: None,
                lag_before_fault_s: lag_before,
                lag_at_declaration: self
                    .preflight
                    .iter()
                    .find(|(subject, detail)| {
                        subject.split('/').next() == Some(e.name.as_str()) && detail.contains("of writes")
                    })
                    .map(|(_, detail)| detail.clone()),
                how,
            });
        }
        Measured { datastores, plan_steps, journal }
    }

    /// Phase 6: heals every fault injected, always.
    async fn heal(&mut self) {
        for i in 0..self.faults.len() {
            let (rec, fid, _) = &self.faults[i];
            if rec.injected_at_s.is_none() {
                continue;
            }
            let kind = rec.kind.clone();
            match self.injector.heal(*fid, &rec.fault).await {
                Ok(notes) => {
                    let at = self.clock.now();
                    self.faults[i].0.healed_at_s = Some(at);
                    let extra = if notes.is_empty() { String::new() } else { format!(": {}", notes.join("; ")) };
                    self.say(&format!("{at:>6.2}s  healed {kind}{extra}"));
                    self.event(at, "healed", format!("{kind}{extra}"));
                }
                Err(e) => self.say(&format!("          could not heal {kind}: {e}")),
            }
        }
    }

    /// Services still down once the faults are gone: watched until they
    /// recover (their RTO then includes the time the fault lasted, as
    /// users felt it), for [`RECOVERY_WATCH`] at most.
    async fn watch_recovery(&mut self) {
        let watch_until = Instant::now() + RECOVERY_WATCH;
        while self.probes.iter().any(|p| !p.healthy_now)
            && Instant::now() < watch_until
            && !self.opts.cancel.is_cancelled()
        {
            let results = self.check_all().await;
            let at = self.clock.now();
            let mut recovered = Vec::new();
            for (p, r) in self.probes.iter_mut().zip(results) {
                if r.is_ok() && !p.healthy_now {
                    p.healthy_now = true;
                    p.recovered_at = Some(at);
                    recovered.push(p.name.clone());
                }
            }
            for name in recovered {
                self.say(&format!("{at:>6.2}s  {name} healthy again"));
                self.event(at, "recovered", format!("{name} healthy"));
            }
            self.opts.clock.sleep(PROBE_INTERVAL).await;
        }
    }

    /// Phase 6, continued: over the whole drill (healing included), did
    /// two members ever take writes? Any violation fails the drill.
    async fn check_safety(&mut self, datastores: &mut [DatastoreResult]) {
        let mut violations = Vec::new();
        if let Some(lab) = &self.opts.lab {
            let since_ms = self.clock.wall0.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            for d in datastores.iter_mut().filter(|d| d.kind == "postgres") {
                match lab.safety(&d.name, since_ms).await {
                    // A drill shorter than a probe round (interrupted at once): not probed.
                    Ok(s) if s.probe_rounds == 0 && self.clock.now() < 2.0 => {}
                    Ok(s) => {
                        d.writable_primaries_max = Some(s.writable_primaries_max);
                        d.split_brain_writes = Some(s.split_brain_writes);
                        if s.writable_primaries_max > 1 {
                            violations.push(format!(
                                "{}: {} members took writes at the same moment",
                                d.name, s.writable_primaries_max
                            ));
                        }
                        if s.split_brain_writes > 0 {
                            violations.push(format!(
                                "{}: {} writes acknowledged by a member after another was promoted",
                                d.name, s.split_brain_writes
                            ));
                        }
                        if s.probe_rounds == 0 {
                            violations.push(format!("{}: the split-brain probes did not run", d.name));
                        }
                    }
                    Err(e) => violations.push(format!("{}: the split-brain check failed: {e}", d.name)),
                }
            }
        }
        for v in violations {
            self.say(&format!("          UNSAFE: {v}"));
            let at = self.clock.now();
            self.event(at, "unsafe", v.clone());
            self.safety_violations.push(v);
        }
    }

    /// Phase 7: the report, every time on the drill's clock.
    fn report(mut self, measured: Measured) -> Report {
        let opts = self.opts;
        let topo = &opts.topology;
        let Measured { datastores, plan_steps, journal } = measured;
        let clock = &self.clock;
        let steps: Vec<StepRecord> = journal
            .iter()
            .map(|s| StepRecord {
                id: s.id.clone(),
                entity: s.entity.clone(),
                action: s.action.clone(),
                state: s.state.as_str().into(),
                started_s: s.started_at.map(|t| clock.of(t)),
                finished_s: s.finished_at.map(|t| clock.of(t)),
                note: s.note.clone(),
                error: s.error.clone(),
                ran_by: s.ran_by.clone(),
            })
            .collect();
        let first_fault = self.first_fault();
        let declared_at = self.declared_at;
        let affected: Vec<&str> = plan_steps.iter().map(|s| s.entity.as_str()).collect();
        let services: Vec<ServiceResult> = topo
            .services()
            .map(|(_, e, _)| {
                let p = self.probes.iter().find(|p| p.name == e.name);
                let unhealthy = p.and_then(|p| p.unhealthy_at);
                let recovered = p.and_then(|p| if p.healthy_now { p.recovered_at } else { None });
                let never_down = unhealthy.is_none() && p.is_some_and(|p| p.healthy_now);
                let in_plan = affected.contains(&e.name.as_str());
                // Without a health check, the journal says when its failover ended.
                let journal_done = journal
                    .iter()
                    .filter(|s| s.entity == e.name)
                    .map(|s| (s.state == drctl_state::journal::StepState::Succeeded, s.finished_at))
                    .try_fold(None, |acc: Option<f64>, (ok, at)| {
                        let t = clock.of(at?);
                        ok.then_some(Some(acc.map_or(t, |a| a.max(t))))
                    })
                    .flatten();
                let rto = if never_down {
                    Some(0.0)
                } else {
                    match (recovered, declared_at, unhealthy) {
                        (Some(r), Some(d), _) => Some((r - d).max(0.0)),
                        (Some(r), None, Some(u)) => Some(r - u),
                        _ if p.is_none() && in_plan => journal_done.zip(declared_at).map(|(f, d)| (f - d).max(0.0)),
                        _ => None,
                    }
                };
                let from_fault = if never_down {
                    Some(0.0)
                } else if p.is_none() {
                    journal_done.zip(first_fault).map(|(r, f)| r - f)
                } else {
                    recovered.zip(first_fault).map(|(r, f)| r - f)
                };
                let target = e.targets.rto.map(|t| t.as_secs_f64());
                // No health check and no failover: nothing to measure, nothing missed.
                let unmeasured = p.is_none() && !in_plan;
                ServiceResult {
                    name: e.name.clone(),
                    tier: e.tier.map(|t| topo.tiers[t].name.clone()),
                    affected: in_plan || unhealthy.is_some(),
                    rto_s: rto,
                    rto_from_fault_s: from_fault,
                    rto_target_s: target,
                    meets_rto: unmeasured
                        || match (rto, target) {
                            (Some(r), Some(t)) => r <= t,
                            (Some(_), None) => true,
                            (None, _) => false,
                        },
                    unhealthy_at_s: unhealthy,
                    recovered_at_s: recovered,
                }
            })
            .collect();
        // Recovered once every affected service is healthy again and, in a
        // `recover: restore` drill, every damaged datastore is restored.
        let recovered_at = if services.iter().all(|s| s.recovered_at_s.is_some() || !s.affected) {
            services.iter().filter_map(|s| s.recovered_at_s).chain(self.restored_at).reduce(f64::max)
        } else {
            None
        };
        let safe = self.safety_violations.is_empty();
        let restore: Vec<serde_json::Value> = self.restores.iter().map(|(_, o)| o.json.clone()).collect();
        let objectives_met = self.stopped_early.is_none()
            && self.restores.iter().all(|(_, o)| o.ok)
            && safe
            && services.iter().all(|s| s.meets_rto)
            && datastores.iter().all(|d| d.meets_rpo)
            && self.exec_done.as_deref().is_none_or(|s| s == exec_state::SUCCEEDED);
        let row = self.execution.as_ref().and_then(|e| opts.state.execution(e).ok());
        let overrides = row.as_ref().and_then(|r| failover::overrides_used(&*opts.state, r).ok()).unwrap_or_default();
        let execution_state = row.map(|r| r.state);
        self.timeline.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        Report {
            id: self.id,
            experiment: opts.experiment.name.clone(),
            description: opts.experiment.description.clone(),
            topology: topo.name.clone(),
            declare: opts.experiment.declare.describe(),
            declared_after_fault_s: declared_at.zip(first_fault).map(|(d, f)| d - f),
            started_at: failover::rfc3339(self.clock.wall0),
            finished_at: failover::rfc3339(self.clock.wall()),
            duration_s: self.clock.now(),
            detected_at_s: self.detected_at,
            declared_at_s: declared_at,
            recovered_at_s: recovered_at,
            execution: self.execution,
            execution_state,
            overrides,
            scope: self.scope,
            stopped_early: self.stopped_early,
            objectives_met,
            safe,
            safety_violations: self.safety_violations,
            faults: self.faults.into_iter().map(|f| f.0).collect(),
            steps,
            services,
            datastores,
            timeline: self.timeline,
            thresholds: serde_json::json!({
                "probe_interval_s": PROBE_INTERVAL.as_secs_f64(),
                "probe_timeout": "each service's health timeout",
                "scope_probe_timeout_s": SCOPE_PROBE_TIMEOUT.as_secs_f64(),
                "recovery_watch_s": RECOVERY_WATCH.as_secs_f64(),
                "failures_to_detect": DETECT_FAILURES,
            }),
            restore: restore.first().cloned(),
            restores: if restore.len() > 1 { restore } else { Vec::new() },
        }
    }
}

fn opts_recover_restore(o: &Options) -> bool {
    o.experiment.recover == Recover::Restore
}

/// Declares through the first controller that takes it (a follower
/// forwards to the leader; during an election every one may say 503).
/// `Ok(None)`: none could take it now, try again at the next probe.
async fn declare_via_controllers(
    controllers: &[String],
    token: &str,
    body: &serde_json::Value,
) -> Result<Option<(String, String)>, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .map_err(|e| e.to_string())?;
    for base in controllers {
        let Ok(r) = client.post(format!("{base}/api/v1/declare")).bearer_auth(token).json(body).send().await else {
            continue;
        };
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        match status {
            202 => return Ok(Some((v["id"].as_str().unwrap_or_default().to_string(), base.clone()))),
            409 => return Err(format!("the declaration was refused: {}", v["error"].as_str().unwrap_or_default())),
            503 | 502 => continue,
            other => return Err(format!("{base} answered {other}: {v}")),
        }
    }
    Ok(None)
}

async fn check_stop_when(
    conditions: &[StopWhen],
    clients: &Clients,
    topo: &Topology,
    state: &State,
    probes: &[Probe],
    clock: &Clock,
) -> Option<String> {
    if conditions.is_empty() {
        return None;
    }
    let mut status = None;
    for c in conditions {
        match c {
            StopWhen::RpoAbove { datastore, bound } => {
                if status.is_none() {
                    let placements = state.placements().unwrap_or_default();
                    let at = clock.wall();
                    let st = drctl_control::live::status(clients, topo, &placements, at).await;
                    let _ = drctl_control::live::record(state, &st, at);
                    status = Some(st);
                }
                let rpo = status.as_ref()?.datastores.iter().find(|d| d.name == *datastore).and_then(|d| d.rpo_s);
                if let Some(r) = rpo.filter(|r| *r > bound.as_secs_f64()) {
                    return Some(format!("{datastore}'s RPO is {r:.1}s, above {}s", bound.as_secs_f64()));
                }
            }
            StopWhen::RtoAbove { service, bound } => {
                if let Some(p) = probes.iter().find(|p| p.name == *service) {
                    if let (false, Some(u)) = (p.healthy_now, p.unhealthy_at) {
                        let down = clock.now() - u;
                        if down > bound.as_secs_f64() {
                            return Some(format!("{service} has been down {down:.1}s, above {}s", bound.as_secs_f64()));
                        }
                    }
                }
            }
        }
    }
    None
}

/// The phases on their own, without a lab: a service whose health is
/// whatever the test says, on tokio's paused clock where time matters.
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU16, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A health endpoint answering whatever status `status` holds.
    async fn health_endpoint(status: Arc<AtomicU16>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let code = status.load(Ordering::SeqCst);
                let reply = format!("HTTP/1.1 {code} S\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        });
        url
    }

    fn options(health_url: &str, clock: Arc<dyn drctl_runtime::Clock>) -> Options {
        let topology = format!(
            "version: 1\nname: t\nzones:\n  - {{ name: az1, region: r1 }}\n  - {{ name: az2, region: r1 }}\n\
             objectives:\n  tier-0: {{ rpo: 5s, rto: 2s }}\n\
             services:\n  - {{ name: web, tier: tier-0, zones: [az1, az2], health: {{ url: \"{health_url}\", timeout: 1s }} }}\n"
        );
        let loaded = drctl_core::load_str(&topology, std::path::Path::new("drctl.yaml"));
        let experiment =
            "name: t\nfaults:\n  - { kind: replication-pause, datastore: none }\nduration: 1m\ndeclare: manual\n";
        Options {
            topology: Arc::new(loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))),
            experiment: drctl_core::chaos::load_str(experiment, std::path::Path::new("x.yaml")).unwrap(),
            state: State::in_memory().unwrap(),
            clients: Default::default(),
            lab: None,
            parallel: None,
            steady_timeout: Duration::from_secs(1),
            clock,
            cancel: Default::default(),
            say: Box::new(|_| {}),
            controllers: Vec::new(),
            token: None,
            id: None,
        }
    }

    fn injected_at(d: &mut Drill<'_>, at_s: f64) {
        d.faults[0].0.injected_at_s = Some(at_s);
    }

    #[tokio::test]
    async fn an_outage_is_three_failed_checks_in_a_row_after_a_fault_and_no_sooner() {
        let status = Arc::new(AtomicU16::new(503));
        let url = health_endpoint(status.clone()).await;
        let opts = options(&url, Arc::new(drctl_runtime::SystemClock));
        let mut d = Drill::new(&opts);
        for _ in 0..3 {
            d.probe().await;
        }
        assert!(d.detect().len() == 1 && d.detected_at.is_none(), "failing before any fault is not the drill's outage");
        assert!(d.probes[0].healthy_now && d.probes[0].unhealthy_at.is_none());

        status.store(200, Ordering::SeqCst);
        d.probe().await;
        injected_at(&mut d, 0.0);
        status.store(503, Ordering::SeqCst);
        d.probe().await;
        d.probe().await;
        assert!(d.detect().is_empty() && d.detected_at.is_none(), "two failures are not yet an outage");
        assert!(!d.probes[0].healthy_now, "but the service is unhealthy from the first");
        d.probe().await;
        assert_eq!(d.detect(), ["web"]);
        assert!(d.detected_at.is_some());
        let kinds: Vec<&str> = d.timeline.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["steady", "unhealthy", "detected"]);

        status.store(200, Ordering::SeqCst);
        d.probe().await;
        assert!(d.probes[0].healthy_now && d.probes[0].recovered_at.is_some());
        assert_eq!(d.timeline.last().map(|e| e.kind.as_str()), Some("recovered"));
    }

    #[tokio::test(start_paused = true)]
    async fn rto_runs_from_the_declaration_and_from_the_fault_on_the_drills_clock() {
        let base = std::time::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let opts = options("http://127.0.0.1:9/health", Arc::new(drctl_runtime::MockClock::starting_at(base)));
        let mut d = Drill::new(&opts);
        injected_at(&mut d, 1.0);
        d.declared_at = Some(1.5);
        d.probes[0].unhealthy_at = Some(1.25);
        d.probes[0].recovered_at = Some(4.0);
        opts.clock.sleep(Duration::from_secs(5)).await;
        let report = d.report(Measured { datastores: Vec::new(), plan_steps: Vec::new(), journal: Vec::new() });
        let web = &report.services[0];
        assert_eq!((web.rto_s, web.rto_from_fault_s), (Some(2.5), Some(3.0)));
        assert_eq!(web.rto_target_s, Some(2.0));
        assert!(!web.meets_rto && !report.objectives_met, "2.5 s against a 2 s target is missed");
        assert_eq!(report.duration_s, 5.0, "five seconds of the drill's clock, none of the test's");
        assert_eq!(report.started_at, failover::rfc3339(base));
        assert!(report.safe, "nothing probed, nothing unsafe");
    }

    /// Nobody stands by a drill to decide: an execution that pauses on a
    /// failed step is aborted through the journal, and the drill stops
    /// early saying which step failed and why.
    #[tokio::test]
    async fn a_drill_whose_execution_pauses_aborts_it_and_says_why() {
        let dir = std::env::temp_dir().join(format!("drctl-drill-pause-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("rb.yaml"),
            "name: job\nsteps:\n  - { id: bad, action: exec, with: { command: [\"false\"] } }\n  \
             - { id: after, action: exec, with: { command: [\"true\"] }, needs: [bad] }\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("drctl.yaml"),
            "version: 1\nzones: [ { name: az1 }, { name: az2 } ]\nservices:\n  \
             - { name: job, zones: [az1, az2], failover: { runbook: rb.yaml } }\n",
        )
        .unwrap();
        let loaded = drctl_core::load(&dir.join("drctl.yaml"));
        let mut opts = options("http://127.0.0.1:9/health", Arc::new(drctl_runtime::SystemClock));
        opts.topology = Arc::new(loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics)));
        let mut d = Drill::new(&opts);
        let declarer = Declarer::new(opts.topology.clone(), opts.state.clone(), opts.clients.clone());
        let decl = Declaration {
            zones: vec!["az1".into()],
            regions: Vec::new(),
            targets: Vec::new(),
            reason: "drill".into(),
            overrides: Default::default(),
            parallel: None,
        };
        let proposal = declarer.propose(decl, None).await.unwrap();
        let who = Actor::new("drill", "controller");
        assert_eq!(
            declarer.record(&proposal, &who, false, IncidentPolicy::None).unwrap(),
            Recorded::Accepted { incident: None }
        );
        let id = proposal.id.clone();
        let ended = declarer.run(&id).await;
        assert!(ended.is_ok(), "{ended:?}");
        assert_eq!(opts.state.execution(&id).unwrap().state, exec_state::PAUSED);

        d.execution = Some(id.clone());
        d.watch_execution().await;
        assert_eq!(opts.state.execution(&id).unwrap().state, "aborted", "aborted through the journal");
        assert_eq!(d.exec_done.as_deref(), Some("aborted"));
        let why = d.stopped_early.clone().unwrap_or_default();
        assert!(why.starts_with("the execution paused (job/bad failed: "), "{why}");
        assert!(why.ends_with("the drill aborted it"), "{why}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A drill aborted while its failover runs (its future dropped, as a
    /// controller past its shutdown deadline drops it) takes the failover
    /// with it: the step in flight is stopped, and the execution is aborted
    /// through the journal as a commander's abort is (the step closed with
    /// a note, the lease given up), not left running.
    #[tokio::test]
    async fn an_aborted_drill_aborts_its_failover_through_the_journal() {
        let dir = std::env::temp_dir().join(format!("drctl-drill-dropped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("pid");
        let _ = std::fs::remove_file(&pid_file);
        std::fs::write(
            dir.join("rb.yaml"),
            format!(
                "name: job\nsteps:\n  - {{ id: slow, action: exec, with: {{ command: [sh, -c, \"echo $$ > {}; exec sleep 60\"] }} }}\n",
                pid_file.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("drctl.yaml"),
            "version: 1\nzones: [ { name: az1 }, { name: az2 } ]\nservices:\n  \
             - { name: job, zones: [az1, az2], failover: { runbook: rb.yaml } }\n",
        )
        .unwrap();
        let loaded = drctl_core::load(&dir.join("drctl.yaml"));
        let mut opts = options("http://127.0.0.1:9/health", Arc::new(drctl_runtime::SystemClock));
        opts.topology = Arc::new(loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics)));
        let declarer = Declarer::new(opts.topology.clone(), opts.state.clone(), opts.clients.clone());
        let decl = Declaration {
            zones: vec!["az1".into()],
            regions: Vec::new(),
            targets: Vec::new(),
            reason: "drill".into(),
            overrides: Default::default(),
            parallel: None,
        };
        let proposal = declarer.propose(decl, None).await.unwrap();
        let who = Actor::new("drill", "controller");
        declarer.record(&proposal, &who, false, IncidentPolicy::None).unwrap();
        let id = proposal.id.clone();

        let mut d = Drill::new(&opts);
        d.exec_task = Some(Failover::start(declarer, opts.state.clone(), id.clone()));
        d.execution = Some(id.clone());
        let until = Instant::now() + Duration::from_secs(20);
        let pid: u32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse().ok()) {
                break pid;
            }
            assert!(Instant::now() < until, "the step never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(opts.state.execution(&id).unwrap().state, exec_state::RUNNING);

        drop(d);
        let until = Instant::now() + Duration::from_secs(20);
        while opts.state.execution(&id).unwrap().state != exec_state::ABORTED {
            assert!(Instant::now() < until, "still {}", opts.state.execution(&id).unwrap().state);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let step = &opts.state.steps(&id).unwrap()[0];
        assert_eq!(step.state, drctl_state::journal::StepState::Skipped);
        assert!(step.note.as_deref().unwrap_or_default().contains("interrupted while it ran"), "{step:?}");
        assert!(opts.state.execution_owner(&id, SystemTime::now()).unwrap().is_none(), "the lease was given up");
        let events = opts.state.events(&id).unwrap();
        assert!(events.iter().any(|e| e.detail.as_deref() == Some("aborted by drill")), "{events:?}");
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(Instant::now() < until, "the step's process {pid} still runs");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
