//! Writes the etcd v3 gRPC client code (KV and Lease services, prost
//! messages) into `src/pb/`, from the `.proto` files in `proto/`.
//!
//! The generated code is committed so that building drctl needs no
//! `protoc`; this program is the only thing that does, and is run by hand
//! (`scripts/etcd-codegen.sh`) when the protos or tonic/prost change.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let crate_dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("codegen/ is inside the crate").to_path_buf();
    let proto = crate_dir.join("proto");
    let out = crate_dir.join("src/pb");
    std::fs::create_dir_all(&out)?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .out_dir(&out)
        .compile_protos(&[proto.join("rpc.proto")], &[proto])?;
    for f in std::fs::read_dir(&out)? {
        println!("wrote {}", f?.path().display());
    }
    Ok(())
}
