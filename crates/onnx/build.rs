//! Generates Rust types for the ONNX schema subset in `proto/onnx/onnx_subset.proto`.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let proto = proto_root.join("onnx/onnx_subset.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    prost_build::Config::new()
        .protoc_executable(protoc_bin_vendored::protoc_bin_path()?)
        .compile_protos(&[proto], &[proto_root])?;
    Ok(())
}
