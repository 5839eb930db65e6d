//! The JSON fast path: a machine-written topology (JSON is YAML) loads,
//! validates and plans exactly as the same topology written in YAML, its
//! mistakes have positions, and hostile JSON is refused, never a panic.

use drctl_core::decode::to_json;
use drctl_core::plan::{plan_with, Observations, Scope};
use drctl_core::schedule::Policy;
use drctl_core::{load_str, synth, yaml};
use proptest::prelude::*;
use std::path::Path;

/// The same document as JSON, through the YAML loader's own tree.
fn as_json(yaml_src: &str) -> String {
    serde_json::to_string_pretty(&to_json(&yaml::parse(yaml_src).unwrap())).unwrap()
}

fn plan_of(src: &str, path: &Path) -> String {
    let loaded = load_str(src, path);
    let topo = loaded.topology.unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
    let scope = Scope { zones: vec![topo.zones[0].name.clone()], ..Scope::default() };
    let plan = plan_with(&topo, &scope, &Observations::default(), Some(4), Policy::Prioritised).unwrap();
    serde_json::to_string(&plan.plan).unwrap()
}

#[test]
fn a_json_topology_plans_exactly_as_its_yaml() {
    let yaml_src = synth::topology_yaml(2_000, 11);
    let json_src = as_json(&yaml_src);
    assert!(drctl_core::json::looks_like_json(&json_src));
    assert_eq!(plan_of(&json_src, Path::new("t.json")), plan_of(&yaml_src, Path::new("t.yaml")));

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/saas/drctl.yaml");
    let yaml_src = std::fs::read_to_string(&example).unwrap();
    let json_src = format!("# generated\n{}", as_json(&yaml_src));
    assert_eq!(plan_of(&json_src, &example), plan_of(&yaml_src, &example), "runbooks and contracts too");
}

#[test]
fn mistakes_in_json_have_their_positions() {
    let src =
        "{\n  \"version\": 1,\n  \"zones\": [ { \"name\": \"a\" }, { \"name\": \"b\" } ],\n  \"servics\": []\n}\n";
    let diags = load_str(src, Path::new("t.json")).diagnostics;
    let unknown = diags.iter().find(|d| d.message.contains("servics")).expect("unknown key reported");
    assert_eq!((unknown.pos.line, unknown.pos.col), (4, 3));
    assert!(unknown.hint.as_deref().unwrap_or("").contains("services"), "{unknown:?}");

    let broken = "{\n  \"version\": 1,\n  \"zones\": [ { \"name\": \"a\" } \n}\n";
    let d = &load_str(broken, Path::new("t.json")).diagnostics[0];
    assert_eq!(d.pos.line, 4, "{d:?}");
    assert!(d.message.contains("expected `,` or `]`"), "{d:?}");

    let escaped = "{ \"version\": 1, \"name\": \"caf\\u00e9 \\ud83d\\ude00\", \"zones\": [ { \"name\": \"a\" } ] }";
    let root = yaml::parse_streaming(escaped, &[], &mut |_, _| {}).unwrap();
    assert_eq!(root.peek("name"), Some("café 😀"));
}

#[test]
fn deep_json_is_refused_with_a_position() {
    let deep = format!("{{\"version\": 1, \"name\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let d = &load_str(&deep, Path::new("t.json")).diagnostics[0];
    assert!(d.message.contains("nested deeper than 64 levels"), "{d:?}");
    assert_eq!(d.pos.line, 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, .. ProptestConfig::default() })]

    /// Whatever follows a `{`, the loader answers: a topology or diagnostics.
    #[test]
    fn the_json_loader_never_panics(body in "[\\[\\]{}\":,0-9a-z\\\\ \\n.eE+-]{0,200}") {
        let _ = load_str(&format!("{{{body}"), Path::new("t.json"));
    }

    /// A valid topology cut anywhere is an error, never a panic.
    #[test]
    fn a_truncated_json_topology_is_an_error(cut in 1usize..2_000) {
        let json_src = as_json(&synth::topology_yaml(20, 3));
        let cut = cut.min(json_src.len() - 1);
        let cut = (0..=cut).rev().find(|i| json_src.is_char_boundary(*i)).unwrap();
        let loaded = load_str(&json_src[..cut], Path::new("t.json"));
        prop_assert!(loaded.topology.is_none());
    }
}
