//! Where the time of loading a 100k-entity topology goes: the YAML event
//! parser alone, the positioned tree, decoding, and the full load. Used to
//! decide the streaming decoder (see `yaml::parse_streaming`); run with
//! `cargo run --release -p drctl-core --example parse_profile`.

use std::time::Instant;
fn main() {
    let yaml = drctl_core::synth::topology_yaml(100_000, 42);
    let t = Instant::now();
    let mut p = saphyr_parser::Parser::new_from_str(&yaml);
    let mut n = 0;
    while let Some(ev) = p.next_event() {
        ev.unwrap();
        n += 1;
    }
    println!("events only: {n} in {:?}", t.elapsed());
    let t = Instant::now();
    let root = drctl_core::yaml::parse(&yaml).unwrap();
    println!("tree: {:?}", t.elapsed());
    let t = Instant::now();
    let mut diags = drctl_core::diag::Diagnostics::new(std::path::Path::new("x"));
    let raw = drctl_core::topology::raw::decode(&mut drctl_core::decode::Decoder::new(&mut diags), &root);
    println!("decode: {:?} ({} ds)", t.elapsed(), raw.datastores.len());
    let t = Instant::now();
    let l = drctl_core::load_str(&yaml, std::path::Path::new("x"));
    println!("full load: {:?} ok={}", t.elapsed(), l.topology.is_some());
}
