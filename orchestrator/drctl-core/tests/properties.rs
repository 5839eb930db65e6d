//! Properties every plan must have, on generated topologies (docs/reference/cli.md):
//! dependencies respected, the `--parallel` cap respected, no idle slot
//! while work is ready, and without a cap a makespan equal to the critical
//! path. Plus: the loader never panics, whatever it is given.

use drctl_core::plan::{plan_with, DetailedPlan, Observations, Scope};
use drctl_core::schedule::Policy;
use drctl_core::synth::Rng;
use drctl_core::{load_str, Topology};
use proptest::prelude::*;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

/// A random DAG topology: datastores and services in three zones, random
/// estimates, tiers, contracts and dependencies on earlier entities.
fn random_topology(seed: u64, size: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut y = String::from(
        "version: 1\nzones: [ { name: a, region: r1 }, { name: b, region: r1 }, { name: c, region: r2 } ]\n",
    );
    y.push_str("objectives: { t0: { rto: 40s }, t1: { rto: 2m }, t2: { rto: 10m } }\n");
    let zones = ["a", "b", "c"];
    let mut names = Vec::new();
    y.push_str("datastores:\n");
    let n_ds = 1 + size / 3;
    for d in 0..n_ds {
        let p = rng.below(3) as usize;
        let r = (p + 1 + rng.below(2) as usize) % 3;
        let est = 1 + rng.below(40);
        let _ = writeln!(y, "  - {{ name: d{d}, kind: postgres, primary: {{ zone: {}, url: \"postgres://h/{d}\" }}, replicas: [ {{ zone: {}, url: \"postgres://r/{d}\" }} ], failover: {{ estimate: {est}s }} }}", zones[p], zones[r]);
        names.push(format!("d{d}"));
    }
    y.push_str("services:\n");
    for s in 0..size {
        let mut deps: Vec<String> = Vec::new();
        for _ in 0..rng.below(4) {
            let dep = names[rng.below(names.len() as u64) as usize].clone();
            if !deps.contains(&dep) {
                deps.push(dep);
            }
        }
        let z1 = rng.below(3) as usize;
        let z2 = (z1 + 1) % 3;
        let tier = match rng.below(4) {
            0 => String::new(),
            t => format!("tier: t{}, ", t - 1),
        };
        let est = 1 + rng.below(30);
        let _ = writeln!(
            y,
            "  - {{ name: s{s}, {tier}zones: [{}, {}], depends_on: [{}], failover: {{ estimate: {est}s }} }}",
            zones[z1],
            zones[z2],
            deps.join(", ")
        );
        names.push(format!("s{s}"));
    }
    y
}

fn load(src: &str) -> Topology {
    let l = load_str(src, Path::new("gen.yaml"));
    l.topology.unwrap_or_else(|| panic!("generated topology invalid: {:#?}\n{src}", l.diagnostics))
}

const EPS: f64 = 1e-9;

fn check_plan(d: &DetailedPlan, cap: Option<usize>) -> Result<(), TestCaseError> {
    let p = &d.plan;
    let index: HashMap<&str, usize> = p.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    for s in &p.steps {
        prop_assert!((s.finish_s - s.start_s - s.estimate_s).abs() < EPS);
        for a in &s.after {
            let pred = &p.steps[index[a.as_str()]];
            prop_assert!(pred.finish_s <= s.start_s + EPS, "{} starts before {} finishes", s.id, a);
        }
    }
    // The cap, and no idle slot while a step is ready (list scheduling).
    let mut events: Vec<f64> = p.steps.iter().flat_map(|s| [s.start_s, s.finish_s]).collect();
    events.sort_by(f64::total_cmp);
    for &t in &events {
        let running = p.steps.iter().filter(|s| s.start_s <= t + EPS && t + EPS < s.finish_s).count();
        if let Some(n) = cap {
            prop_assert!(running <= n, "{running} steps run at {t}s with --parallel {n}");
            let ready_waiting = p
                .steps
                .iter()
                .any(|s| s.start_s > t + EPS && s.after.iter().all(|a| p.steps[index[a.as_str()]].finish_s <= t + EPS));
            prop_assert!(!ready_waiting || running == n, "a slot is idle at {t}s while a step is ready");
        }
    }
    // The critical path is a chain of dependencies as long as it says.
    let path: Vec<&drctl_core::plan::Step> = p.critical_path.iter().map(|id| &p.steps[index[id.as_str()]]).collect();
    for w in path.windows(2) {
        prop_assert!(w[1].after.contains(&w[0].id), "{} does not follow {}", w[1].id, w[0].id);
    }
    let len: f64 = path.iter().map(|s| s.estimate_s).sum();
    prop_assert!((len - p.critical_path_s).abs() < 1e-6);
    match cap {
        None => prop_assert!(
            (p.makespan_s - p.critical_path_s).abs() < EPS,
            "makespan {} != critical path {}",
            p.makespan_s,
            p.critical_path_s
        ),
        Some(n) => {
            let work: f64 = p.steps.iter().map(|s| s.estimate_s).sum();
            prop_assert!(p.makespan_s + EPS >= p.critical_path_s.max(work / n as f64));
        }
    }
    // Each entity's RTO estimate is the finish of its last step.
    for e in &p.entities {
        let last = p.steps.iter().filter(|s| s.entity == e.name).map(|s| s.finish_s).fold(0.0, f64::max);
        prop_assert!((last - e.rto_estimate_s).abs() < EPS);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn plans_respect_dependencies_and_the_cap(seed in any::<u64>(), size in 1usize..40, lost in 0usize..3,
                                              cap in proptest::option::of(1usize..6), baseline in any::<bool>()) {
        let topo = load(&random_topology(seed, size));
        let scope = Scope { zones: vec![["a", "b", "c"][lost].to_string()], ..Scope::default() };
        let policy = if baseline { Policy::TierThenOrder } else { Policy::Prioritised };
        let d = plan_with(&topo, &scope, &Observations::default(), cap, policy).unwrap();
        check_plan(&d, cap)?;
    }

    #[test]
    fn the_loader_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        let _ = load_str(&text, Path::new("fuzz.yaml"));
    }

    #[test]
    fn the_loader_never_panics_on_a_damaged_topology(seed in any::<u64>(), cut in 0usize..2000, junk in "[ -~\\n]{0,8}") {
        let mut src = random_topology(seed, 6);
        let at = cut.min(src.len());
        let at = (0..=at).rev().find(|&i| src.is_char_boundary(i)).unwrap_or(0);
        src.insert_str(at, &junk);
        let loaded = load_str(&src, Path::new("damaged.yaml"));
        if loaded.topology.is_none() {
            prop_assert!(!loaded.diagnostics.is_empty(), "rejected without saying why");
        }
    }
}

/// The requirement on the prioritised scheduler, measured where capacity is
/// roughly adequate (the regime in which ordering decides which targets are
/// met): tier-0 back no later, no more targets missed, makespan within 10%
/// of the lower bound on average.
#[test]
fn prioritised_scheduling_beats_tier_then_file_order() {
    for cap in [4usize, 8, 16] {
        let (mut tier0, mut missed, mut ratio) = ([0.0f64; 2], [0usize; 2], [0.0f64; 2]);
        let topologies = 60;
        for seed in 1..=topologies {
            let topo = load(&drctl_core::synth::topology_yaml(60, seed));
            let scope = Scope { zones: vec!["az1".into()], ..Scope::default() };
            for (k, policy) in [Policy::Prioritised, Policy::TierThenOrder].into_iter().enumerate() {
                let p = plan_with(&topo, &scope, &Observations::default(), Some(cap), policy).unwrap().plan;
                tier0[k] += p
                    .entities
                    .iter()
                    .filter(|e| e.kind == "service" && e.tier.as_deref() == Some("tier-0"))
                    .map(|e| e.rto_estimate_s)
                    .sum::<f64>();
                missed[k] += p.entities.iter().filter(|e| !e.meets_rto).count();
                let work: f64 = p.steps.iter().map(|s| s.estimate_s).sum();
                ratio[k] += p.makespan_s / p.critical_path_s.max(work / cap as f64);
            }
        }
        assert!(tier0[0] <= tier0[1], "cap {cap}: tier-0 restored later ({} vs {})", tier0[0], tier0[1]);
        assert!(missed[0] <= missed[1], "cap {cap}: more targets missed ({} vs {})", missed[0], missed[1]);
        let mean_ratio = ratio[0] / topologies as f64;
        assert!(mean_ratio <= 1.10, "cap {cap}: makespan {mean_ratio:.3} x the lower bound");
    }
}
