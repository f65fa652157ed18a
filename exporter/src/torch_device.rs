//! Picking the libtorch device, loading libtorch's CUDA half on demand.
//!
//! Binaries link only libtorch's CPU libraries (see build.rs). CUDA support lives in
//! `libtorch_cuda.so`, whose static initialisers register the CUDA backend when it is loaded;
//! loading it must therefore happen before the first CUDA query, which libtorch caches.

use std::sync::OnceLock;

use anyhow::bail;

use crate::cli::Device;

const CUDA_LIBRARY: &str = "libtorch_cuda.so";
/// libtorch's lib folder at build time (the rpath folder), tried before the loader's search path.
const BUILD_LIBTORCH_LIB: Option<&str> = option_env!("XLMC_LIBTORCH_LIB");

/// Loads libtorch_cuda once per process; the outcome (or why it failed) is remembered.
pub fn load_cuda() -> Result<(), &'static str> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let mut errors = Vec::new();
            let candidates = BUILD_LIBTORCH_LIB
                .map(|dir| format!("{dir}/{CUDA_LIBRARY}"))
                .into_iter()
                .chain([CUDA_LIBRARY.to_owned()]);
            for candidate in candidates {
                match open_global(&candidate) {
                    Ok(()) => return Ok(()),
                    Err(e) => errors.push(format!("{candidate}: {e}")),
                }
            }
            Err(errors.join("; "))
        })
        .as_ref()
        .map(|_| ())
        .map_err(String::as_str)
}

#[allow(unsafe_code)]
fn open_global(path: &str) -> Result<(), libloading::Error> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: libtorch_cuda's initialisers only register CUDA hooks with the libtorch already
    // loaded in this process; the library stays loaded for the process's lifetime (forgotten).
    let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL)? };
    std::mem::forget(library);
    Ok(())
}

/// The tch device for a CLI `--device`; `cuda` fails with the reason when no GPU is usable.
pub fn select(device: Device) -> anyhow::Result<tch::Device> {
    match device {
        Device::Cpu => Ok(tch::Device::Cpu),
        Device::Cuda => {
            if let Err(reason) = load_cuda() {
                bail!("--device cuda: cannot load libtorch's CUDA library ({reason})");
            }
            if !tch::Cuda::is_available() {
                bail!("--device cuda: libtorch sees no CUDA device (is the NVIDIA driver loaded?)");
            }
            Ok(tch::Device::Cuda(0))
        }
    }
}
