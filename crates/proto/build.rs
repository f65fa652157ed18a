//! Generates the xlmc.v1 service code and the descriptor set that the reflection service serves.
//! protoc comes from the `protoc-bin-vendored` crate, so no system package is needed.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let proto = proto_root.join("xlmc/v1/translate.proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // The proto lives outside this crate, where cargo does not look for changes by itself.
    println!("cargo:rerun-if-changed={}", proto.display());

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("xlmc_v1_descriptor.bin"))
        .compile_with_config(config, &[proto], &[proto_root])?;
    Ok(())
}
