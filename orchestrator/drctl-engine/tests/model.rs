//! The engine against a model of the world, with crashes at every journal
//! write: dependencies and the cap are respected, every step ends, and a
//! step the journal recorded as succeeded never takes effect again. A
//! failed step pauses the execution, and each of a commander's decisions
//! (retry, skip, done by hand, abort) leads to the end the model predicts.

use drctl_engine::{ActionError, Actions, Ended, Engine, Note, StepSpec};
use drctl_state::journal::{exec_state, ExecutionRow, StepState};
use drctl_state::State;
use futures::future::BoxFuture;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The world: how often each step's effect happened, and what went wrong.
#[derive(Default)]
struct World {
    effects: Mutex<HashMap<String, u32>>,
    violations: Mutex<Vec<String>>,
    now_running: AtomicUsize,
    most_running: AtomicUsize,
    /// Steps a commander did by hand (their effect happened, not through drctl).
    by_hand: Mutex<HashSet<String>>,
    /// Steps that fail for good (until a test takes them out).
    fatal: Mutex<HashSet<String>>,
    /// Step → transient failures before it succeeds.
    flaky: Mutex<HashMap<String, u32>>,
    after: HashMap<String, Vec<String>>,
}

impl Actions for World {
    fn run<'a>(
        &'a self,
        _execution: &'a str,
        _attempt: u32,
        step: &'a StepSpec,
    ) -> BoxFuture<'a, Result<Note, ActionError>> {
        Box::pin(async move {
            {
                let effects = self.effects.lock().unwrap();
                let by_hand = self.by_hand.lock().unwrap();
                for dep in &self.after[&step.id] {
                    if effects.get(dep).copied().unwrap_or(0) == 0 && !by_hand.contains(dep) {
                        self.violations.lock().unwrap().push(format!("{} ran before {dep}", step.id));
                    }
                }
            }
            let n = self.now_running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_running.fetch_max(n, Ordering::SeqCst);
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            self.now_running.fetch_sub(1, Ordering::SeqCst);
            if self.fatal.lock().unwrap().contains(&step.id) {
                return Err(ActionError::Fatal("refused".into()));
            }
            if let Some(left) = self.flaky.lock().unwrap().get_mut(&step.id) {
                if *left > 0 {
                    *left -= 1;
                    return Err(ActionError::Transient("throttled".into()));
                }
            }
            *self.effects.lock().unwrap().entry(step.id.clone()).or_default() += 1;
            Ok(Some("done".into()))
        })
    }
}

fn dag(seed: &[u8], n: usize) -> Vec<StepSpec> {
    (0..n)
        .map(|i| {
            let after: Vec<usize> = (0..i).filter(|&j| seed[(i * 7 + j) % seed.len()].is_multiple_of(3)).collect();
            StepSpec {
                id: format!("e{i}/s"),
                entity: format!("e{i}"),
                action: "model".into(),
                after,
                priority: (seed[i % seed.len()] % 10) as f64,
                timeout: Some(Duration::from_secs(5)),
                attempts: 3,
                backoff: Duration::from_millis(1),
                with: serde_json::Value::Null,
                from_zone: None,
                to_zone: None,
                rerun_safe: true,
                continue_on_failure: false,
            }
        })
        .collect()
}

fn world(specs: &[StepSpec]) -> World {
    World {
        after: specs.iter().map(|s| (s.id.clone(), s.after.iter().map(|&d| specs[d].id.clone()).collect())).collect(),
        ..World::default()
    }
}

fn declare(state: &State, specs: &[StepSpec]) {
    let row = ExecutionRow {
        id: "x1".into(),
        declared_at: SystemTime::now(),
        finished_at: None,
        state: exec_state::RUNNING.into(),
        reason: "test".into(),
        plan: "{}".into(),
        options: "{}".into(),
    };
    let steps: Vec<(String, String, String)> =
        specs.iter().map(|s| (s.id.clone(), s.entity.clone(), s.action.clone())).collect();
    let entities: Vec<String> = specs.iter().map(|s| s.entity.clone()).collect();
    state.create_execution(&row, &steps, &entities).unwrap();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn crashes_at_every_journal_write_resume_without_repeating_finished_steps(
        seed in proptest::collection::vec(any::<u8>(), 16..32), n in 1usize..9, cap in proptest::option::of(1usize..4)
    ) {
        let specs = dag(&seed, n);
        // An uninterrupted run: how many journal writes it makes.
        let clean_state = State::in_memory().unwrap();
        declare(&*clean_state, &specs);
        let clean = Arc::new(world(&specs));
        let ended = rt().block_on(Engine::new(clean_state.clone(), clean.clone(), cap).run("x1", &specs)).unwrap();
        prop_assert_eq!(ended, Ended::Succeeded);
        prop_assert!(clean.violations.lock().unwrap().is_empty(), "{:?}", clean.violations.lock().unwrap());
        prop_assert!(clean.effects.lock().unwrap().values().all(|&c| c == 1));
        prop_assert!(clean.most_running.load(Ordering::SeqCst) <= cap.unwrap_or(usize::MAX));
        let writes = clean_state.events("x1").unwrap().len() - 2; // minus declared and the final state

        for k in 1..=writes {
            let state = State::in_memory().unwrap();
            declare(&*state, &specs);
            let w = Arc::new(world(&specs));
            let mut crashing = Engine::new(state.clone(), w.clone(), cap);
            crashing.crash_after_writes = Some(k);
            let crashed = rt().block_on(crashing.run("x1", &specs));
            prop_assert!(matches!(crashed, Err(drctl_engine::Error::Crashed)), "the run did not crash after write {}", k);
            let finished: HashSet<String> =
                state.steps("x1").unwrap().into_iter().filter(|r| r.state == StepState::Succeeded).map(|r| r.id).collect();
            let before: HashMap<String, u32> = w.effects.lock().unwrap().clone();

            let ended = rt().block_on(Engine::new(state.clone(), w.clone(), cap).run("x1", &specs)).unwrap();
            prop_assert_eq!(ended, Ended::Succeeded, "crash after write {}", k);
            let after = w.effects.lock().unwrap().clone();
            for s in &specs {
                prop_assert!(after.get(&s.id).copied().unwrap_or(0) >= 1, "{} never took effect (crash after write {})", s.id, k);
                if finished.contains(&s.id) {
                    prop_assert_eq!(after.get(&s.id), before.get(&s.id), "{} ran again after finishing (crash after write {})", s.id, k);
                }
            }
            prop_assert!(w.violations.lock().unwrap().is_empty(), "{:?}", w.violations.lock().unwrap());
            prop_assert!(state.steps("x1").unwrap().iter().all(|r| r.state == StepState::Succeeded));
        }
    }

    #[test]
    fn a_failed_step_pauses_and_each_decision_ends_as_the_model_says(
        seed in proptest::collection::vec(any::<u8>(), 16..32), n in 2usize..9, bad in 0usize..9,
        cap in proptest::option::of(1usize..4), decision in 0u8..4, go_on in any::<bool>()
    ) {
        let mut specs = dag(&seed, n);
        let bad = bad % n;
        specs[bad].continue_on_failure = go_on;
        let state = State::in_memory().unwrap();
        declare(&*state, &specs);
        let w = Arc::new(world(&specs));
        w.fatal.lock().unwrap().insert(specs[bad].id.clone());
        let ended = rt().block_on(Engine::new(state.clone(), w.clone(), cap).run("x1", &specs)).unwrap();
        prop_assert_eq!(ended, Ended::Paused);
        prop_assert_eq!(state.execution("x1").unwrap().state, exec_state::PAUSED);
        let downstream: HashSet<usize> = drctl_engine::decide::needing(&specs, bad).into_iter().collect();
        let effects = w.effects.lock().unwrap().clone();
        for r in state.steps("x1").unwrap() {
            if r.idx == bad {
                prop_assert_eq!(r.state, StepState::Failed);
            } else if downstream.contains(&r.idx) {
                // What needs the failed step waits with it: never started.
                prop_assert_eq!(r.state, StepState::Pending, "{}", r.id);
                prop_assert!(!effects.contains_key(&r.id), "{} ran after what it needs failed", r.id);
            } else if go_on {
                // on_failure: continue: every independent branch went on.
                prop_assert_eq!(r.state, StepState::Succeeded, "{}", r.id);
            } else {
                // Nothing is left half-run: a step ended or never started.
                prop_assert!(matches!(r.state, StepState::Succeeded | StepState::Pending), "{} {:?}", r.id, r.state);
            }
        }
        // Paused stays paused: running it again (a restarted controller) changes nothing.
        let again = rt().block_on(Engine::new(state.clone(), w.clone(), cap).run("x1", &specs)).unwrap();
        prop_assert_eq!(again, Ended::Paused);
        prop_assert_eq!(w.effects.lock().unwrap().clone(), effects.clone());

        let now = SystemTime::now();
        let id = specs[bad].id.clone();
        let (expect, skipped): (Ended, HashSet<usize>) = match decision {
            0 => {
                w.fatal.lock().unwrap().clear();
                drctl_engine::decide::retry(&*state, "x1", &id, "retried by alice", now).unwrap();
                (Ended::Succeeded, HashSet::new())
            }
            1 => {
                let listed = drctl_engine::decide::skip(&*state, "x1", &specs, &id, "given up by alice", now).unwrap();
                let want: Vec<String> = {
                    let mut d: Vec<usize> = downstream.iter().copied().collect();
                    d.sort();
                    d.into_iter().map(|i| specs[i].id.clone()).collect()
                };
                prop_assert_eq!(listed, want, "skip lists every step that needs it");
                let mut gone = downstream.clone();
                gone.insert(bad);
                (Ended::Failed, gone)
            }
            2 => {
                w.by_hand.lock().unwrap().insert(id.clone());
                drctl_engine::decide::done(&*state, "x1", &id, "done by hand by alice", now).unwrap();
                (Ended::Succeeded, HashSet::new())
            }
            _ => {
                let how = drctl_engine::decide::abort(&*state, "x1", "aborted by alice", now).unwrap();
                prop_assert_eq!(how, drctl_engine::decide::Aborted::Closed, "nothing runs a paused execution");
                (Ended::Aborted, HashSet::new())
            }
        };
        let ended = rt().block_on(Engine::new(state.clone(), w.clone(), cap).run("x1", &specs)).unwrap();
        prop_assert_eq!(ended, expect);
        let after = w.effects.lock().unwrap().clone();
        for r in state.steps("x1").unwrap() {
            let before = effects.get(&r.id).copied().unwrap_or(0);
            let now = after.get(&r.id).copied().unwrap_or(0);
            prop_assert!(now <= 1, "{} took effect {} times", r.id, now);
            if before == 1 {
                prop_assert_eq!(now, 1, "{} ran again", r.id);
            }
            match (decision, r.idx == bad) {
                (3, _) => {
                    // Aborted: what had not started never will; what ran is kept.
                    let want = if r.idx == bad { StepState::Failed } else if before == 1 { StepState::Succeeded } else { StepState::Skipped };
                    prop_assert_eq!(r.state, want, "{}", r.id);
                }
                (2, true) => {
                    prop_assert_eq!(r.state, StepState::Succeeded);
                    prop_assert_eq!(now, 0, "done by hand: not run by drctl");
                }
                (_, _) if skipped.contains(&r.idx) => {
                    prop_assert_eq!(r.state, StepState::Skipped, "{}", r.id);
                    prop_assert_eq!(now, 0, "{} was given up but ran", r.id);
                }
                _ => {
                    prop_assert_eq!(r.state, StepState::Succeeded, "{}", r.id);
                    prop_assert_eq!(now, 1, "{}", r.id);
                }
            }
        }
        prop_assert!(w.violations.lock().unwrap().is_empty(), "{:?}", w.violations.lock().unwrap());
        // Ended is ended: a decision on it is refused.
        prop_assert!(drctl_engine::decide::retry(&*state, "x1", &id, "late", now).is_err());
    }
}

#[test]
fn transient_failures_are_retried_within_the_attempts() {
    let specs = dag(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], 2);
    let state = State::in_memory().unwrap();
    declare(&*state, &specs);
    let w = world(&specs);
    w.flaky.lock().unwrap().insert(specs[0].id.clone(), 2);
    w.flaky.lock().unwrap().insert(specs[1].id.clone(), 5);
    let ended = rt().block_on(Engine::new(state.clone(), Arc::new(w), None).run("x1", &specs)).unwrap();
    let rows = state.steps("x1").unwrap();
    assert_eq!((rows[0].state, rows[0].attempts), (StepState::Succeeded, 3), "two throttles, then success");
    assert_eq!((rows[1].state, rows[1].attempts), (StepState::Failed, 3), "gave up after 3 attempts");
    assert_eq!(rows[1].error.as_deref(), Some("throttled"));
    assert_eq!(ended, Ended::Paused, "a step out of attempts pauses the execution");
}

/// Backoff doubles after each failure, within ±25% jitter, and the journal's
/// timestamps say so: checked on a controlled clock, so minutes of backoff
/// take no real time.
#[tokio::test(start_paused = true)]
async fn retries_back_off_on_the_engines_clock() {
    let mut specs = dag(&[1, 2, 3], 1);
    specs[0].attempts = 4;
    specs[0].backoff = Duration::from_secs(60);
    specs[0].timeout = None;
    let state = State::in_memory().unwrap();
    declare(&*state, &specs);
    let w = world(&specs);
    w.flaky.lock().unwrap().insert(specs[0].id.clone(), 3);
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let clock = Arc::new(drctl_runtime::MockClock::starting_at(base));
    let real = std::time::Instant::now();
    let engine = Engine::new(state.clone(), Arc::new(w), None).with_clock(clock);
    assert_eq!(engine.run("x1", &specs).await.unwrap(), Ended::Succeeded);
    assert!(real.elapsed() < Duration::from_secs(5), "virtual backoff took {:?} of real time", real.elapsed());
    let retries: Vec<Duration> = state
        .events("x1")
        .unwrap()
        .iter()
        .filter(|e| e.kind == "running")
        .map(|e| e.at.duration_since(base).unwrap())
        .collect();
    assert_eq!(retries.len(), 4 + 3, "each attempt starts, each failure is noted: {retries:?}");
    let row = &state.steps("x1").unwrap()[0];
    assert_eq!((row.state, row.attempts), (StepState::Succeeded, 4));
    let waited = row.finished_at.unwrap().duration_since(base).unwrap();
    // 60 s + 120 s + 240 s of backoff, each ±25%.
    assert!(
        waited >= Duration::from_secs(315) && waited <= Duration::from_secs(525),
        "the backoff doubled: {waited:?}"
    );
}

/// A step the crash caught running, whose action cannot check the world:
/// it waits for a commander on resume, runs again only when told to, and is
/// recorded as done without running when told its effect happened.
#[tokio::test(start_paused = true)]
async fn an_interrupted_step_that_cannot_check_the_world_waits_for_a_commander() {
    for done in [false, true] {
        let mut specs = dag(&[1, 2, 3], 2);
        specs[1].after = vec![0];
        specs[0].rerun_safe = false;
        let state = State::in_memory().unwrap();
        declare(&*state, &specs);
        let w = Arc::new(world(&specs));
        // Crash right after the first step's `running` write: its effect's fate is unknown.
        let mut crashing = Engine::new(state.clone(), w.clone(), None);
        crashing.crash_after_writes = Some(1);
        assert!(matches!(crashing.run("x1", &specs).await, Err(drctl_engine::Error::Crashed)));
        assert_eq!(state.steps("x1").unwrap()[0].state, StepState::Running);

        let engine = Engine::new(state.clone(), w.clone(), None);
        let run = tokio::spawn({
            let (engine, specs) = (engine.clone(), specs.clone());
            async move { engine.run("x1", &specs).await }
        });
        // Wait (on the paused clock) until the step is held for a decision.
        let mut held = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let row = &state.steps("x1").unwrap()[0];
            if row.state == StepState::WaitingApproval {
                assert!(row.note.as_deref().unwrap_or("").contains("may or may not have happened"), "{:?}", row.note);
                held = true;
                break;
            }
        }
        assert!(held, "the interrupted step was not held for a commander");
        assert_eq!(w.effects.lock().unwrap().get(&specs[0].id), None, "it did not run again on its own");
        assert!(state.approve("x1", &specs[0].id, "alice", done).unwrap());
        assert_eq!(run.await.unwrap().unwrap(), Ended::Succeeded);
        let effects = w.effects.lock().unwrap().clone();
        let rows = state.steps("x1").unwrap();
        if done {
            assert_eq!(effects.get(&specs[0].id), None, "--done records it without running it");
            assert!(rows[0].note.as_deref().unwrap_or("").contains("recorded as done by alice"), "{:?}", rows[0].note);
        } else {
            assert_eq!(effects.get(&specs[0].id), Some(&1), "approved: it ran again, once");
        }
        assert_eq!(effects.get(&specs[1].id), Some(&1), "what came after it ran once");
    }
}

/// `idempotent: true` (rerun_safe) steps caught running simply run again.
#[tokio::test]
async fn an_interrupted_rerun_safe_step_runs_again_without_asking() {
    let specs = dag(&[1, 2, 3], 1);
    let state = State::in_memory().unwrap();
    declare(&*state, &specs);
    let w = Arc::new(world(&specs));
    let mut crashing = Engine::new(state.clone(), w.clone(), None);
    crashing.crash_after_writes = Some(1);
    assert!(crashing.run("x1", &specs).await.is_err());
    assert_eq!(Engine::new(state.clone(), w.clone(), None).run("x1", &specs).await.unwrap(), Ended::Succeeded);
    assert_eq!(w.effects.lock().unwrap().get(&specs[0].id), Some(&1));
}

/// Two engines (two processes in life) never run one execution at once:
/// the second is refused while the first holds the lease, and names it.
#[tokio::test]
async fn a_second_engine_is_refused_while_the_first_runs() {
    let dir = std::env::temp_dir().join(format!("drctl-lease-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}/state.db", dir.display());
    let first_state = State::open(&url).unwrap();
    let mut specs = dag(&[1, 2, 3], 1);
    specs[0].action = drctl_engine::APPROVAL.into();
    declare(&*first_state, &specs);
    let w = Arc::new(world(&specs));
    let first = Engine::new(first_state.clone(), w.clone(), None);
    let running = tokio::spawn({
        let specs = specs.clone();
        async move { first.run("x1", &specs).await }
    });
    // The first engine waits on the approval, holding the lease.
    while first_state.steps("x1").unwrap()[0].state != StepState::WaitingApproval {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Another process opens the same store and tries to resume.
    let second_state = State::open(&url).unwrap();
    let refused = Engine::new(second_state.clone(), w.clone(), None).run("x1", &specs).await;
    match refused {
        Err(drctl_engine::Error::Owned { by, .. }) => {
            assert!(by.contains(&format!("pid{}", std::process::id())), "{by}")
        }
        other => panic!("the second engine was not refused: {other:?}"),
    }
    second_state.approve("x1", &specs[0].id, "alice", false).unwrap();
    assert_eq!(running.await.unwrap().unwrap(), Ended::Succeeded);
    // Finished: the lease is free again (a later resume is a no-op, not a refusal).
    assert_eq!(Engine::new(second_state, w, None).run("x1", &specs).await.unwrap(), Ended::Succeeded);
    let _ = std::fs::remove_dir_all(&dir);
}
