//! Synthetic topologies of any size, for benchmarks and property tests.
//!
//! Deterministic for a seed (a small xorshift generator, no dependency), and
//! shaped like a real estate: three zones, three tiers, a third datastores
//! each with a replica in the next zone, services in two zones depending on
//! two to four earlier entities (about 2.5 dependencies per entity overall).

use std::fmt::Write;

/// A tiny deterministic PRNG (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A topology file with `entities` entities.
pub fn topology_yaml(entities: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(entities * 160);
    out.push_str("version: 1\nname: synthetic\nzones:\n");
    for z in 1..=3 {
        let _ = writeln!(out, "  - {{ name: az{z}, region: r1 }}");
    }
    out.push_str("objectives:\n  tier-0: { rpo: 5s, rto: 2m }\n  tier-1: { rpo: 1m, rto: 5m }\n  tier-2: { rpo: 1h, rto: 30m }\n");
    let datastores = (entities / 3).max(1).min(entities);
    let services = entities - datastores;
    if services > 0 {
        out.push_str("contracts:\n  - { customer: acme, services: [s0], rto: 90s }\n");
    }
    out.push_str("datastores:\n");
    for d in 0..datastores {
        let z = d % 3 + 1;
        let r = z % 3 + 1;
        let est = 5 + rng.below(55);
        let _ = writeln!(
            out,
            "  - {{ name: d{d}, kind: postgres, primary: {{ zone: az{z}, url: \"postgres://u@h:5432/d{d}\" }}, replicas: [ {{ zone: az{r}, url: \"postgres://u@h:5433/d{d}\" }} ], failover: {{ estimate: {est}s, max_lag: 10s }} }}"
        );
    }
    if services > 0 {
        out.push_str("services:\n");
    }
    for s in 0..services {
        let tier = rng.below(3);
        let z1 = rng.below(3) + 1;
        let z2 = z1 % 3 + 1;
        let n_deps = 2 + rng.below(3) as usize;
        let mut deps: Vec<String> = Vec::with_capacity(n_deps);
        for _ in 0..n_deps {
            // Mostly datastores, sometimes an earlier service (a chain).
            let dep = if s > 0 && rng.below(3) == 0 {
                let lo = s.saturating_sub(50);
                format!("s{}", lo + rng.below((s - lo) as u64) as usize)
            } else {
                format!("d{}", rng.below(datastores as u64))
            };
            if !deps.contains(&dep) {
                deps.push(dep);
            }
        }
        let est = 5 + rng.below(25);
        let _ = writeln!(
            out,
            "  - {{ name: s{s}, tier: tier-{tier}, zones: [az{z1}, az{z2}], depends_on: [{}], failover: {{ estimate: {est}s }} }}",
            deps.join(", ")
        );
    }
    out
}

/// The same topology as [`topology_yaml`], written as JSON (what a
/// generator writes; drctl reads it through its JSON fast path).
pub fn topology_json(entities: usize, seed: u64) -> String {
    let yaml = topology_yaml(entities, seed);
    let tree = crate::yaml::parse(&yaml).expect("the synthetic topology is valid YAML");
    serde_json::to_string(&crate::decode::to_json(&tree)).expect("JSON values serialize")
}
