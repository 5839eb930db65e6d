//! Parse + validate + plan of synthetic topologies of 1k, 10k and 100k
//! entities (`cargo bench -p drctl-core`). `drctl bench plan` reports the
//! same with peak memory; the README records both. `parse_validate_json`
//! reads the same topology written as JSON (the fast path).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use drctl_core::plan::{plan, Observations, Scope};
use drctl_core::synth::{topology_json, topology_yaml};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let scope = Scope { zones: vec!["az1".into()], ..Scope::default() };
    let mut group = c.benchmark_group("topology");
    group.measurement_time(Duration::from_secs(10));
    for n in [1_000usize, 10_000, 100_000] {
        if n >= 100_000 {
            group.sample_size(10);
        }
        let yaml = topology_yaml(n, 42);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("parse_validate", n), &yaml, |b, yaml| {
            b.iter(|| black_box(drctl_core::load_str(yaml, Path::new("bench.yaml")).topology.is_some()))
        });
        // The same topology as a generator writes it: the JSON fast path.
        let json = topology_json(n, 42);
        group.bench_with_input(BenchmarkId::new("parse_validate_json", n), &json, |b, json| {
            b.iter(|| black_box(drctl_core::load_str(json, Path::new("bench.json")).topology.is_some()))
        });
        let topo = drctl_core::load_str(&yaml, Path::new("bench.yaml")).topology.expect("valid");
        group.bench_with_input(BenchmarkId::new("plan", n), &topo, |b, topo| {
            b.iter(|| black_box(plan(topo, &scope, &Observations::default(), None).unwrap().makespan_s))
        });
        group.bench_with_input(BenchmarkId::new("plan_parallel_8", n), &topo, |b, topo| {
            b.iter(|| black_box(plan(topo, &scope, &Observations::default(), Some(8)).unwrap().makespan_s))
        });
        group.bench_with_input(BenchmarkId::new("parse_validate_plan", n), &yaml, |b, yaml| {
            b.iter(|| {
                let topo = drctl_core::load_str(yaml, Path::new("bench.yaml")).topology.expect("valid");
                black_box(plan(&topo, &scope, &Observations::default(), None).unwrap().makespan_s)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
