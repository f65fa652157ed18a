//! Picking the libtorch device, loading libtorch's CUDA half on demand (used by `exporter` and
//! the server's libtorch backend).
//!
//! Binaries link only libtorch's CPU libraries (see their build.rs). CUDA support lives in
//! `libtorch_cuda.so`, whose static initialisers register the CUDA backend when it is loaded;
//! loading it must therefore happen before the first CUDA query, which libtorch caches.

use std::sync::OnceLock;

const CUDA_LIBRARY: &str = "libtorch_cuda.so";
/// libtorch's lib folder at build time (the rpath folder), tried before the loader's search path.
const BUILD_LIBTORCH_LIB: Option<&str> = option_env!("XLMC_LIBTORCH_LIB");

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot load libtorch's CUDA library ({0})")]
    CudaLibrary(String),
    #[error("libtorch sees no CUDA device (is the NVIDIA driver loaded?)")]
    NoCudaDevice,
}

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

/// The CPU, or the first CUDA device when `cuda` (failing with the reason when none is usable).
pub fn select(cuda: bool) -> Result<tch::Device, DeviceError> {
    if !cuda {
        return Ok(tch::Device::Cpu);
    }
    load_cuda().map_err(|reason| DeviceError::CudaLibrary(reason.to_owned()))?;
    if !tch::Cuda::is_available() {
        return Err(DeviceError::NoCudaDevice);
    }
    Ok(tch::Device::Cuda(0))
}
