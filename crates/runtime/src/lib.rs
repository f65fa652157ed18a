//! ONNX Runtime (ORT) for xlmc.
//!
//! ORT is loaded at run time (`ort`'s `load-dynamic`), from the library that `./xlmc setup`
//! unpacked from the `onnxruntime` wheel. [`locate_library`] finds it without the user exporting
//! anything, [`environment`] initialises ORT once per process, and [`SessionOptions`] builds
//! sessions the same way everywhere.
//!
//! ```no_run
//! let env = xlmc_runtime::environment()?;
//! let session = xlmc_runtime::SessionOptions::default().from_memory(env, &[])?;
//! # Ok::<(), xlmc_runtime::RuntimeError>(())
//! ```

use std::{
    env,
    path::{Path, PathBuf},
    sync::OnceLock,
};

mod arrays;
mod bigru;
mod in_place;
mod model;
mod transformer;

pub use bigru::{BiGruSpec, OrtBiGru, OrtBiGruState, OrtBiGruTranslator};
pub use model::OrtModel;
pub use transformer::{DECODER_FILE, ENCODER_FILE, OrtState, OrtTransformer, OrtTranslator, TransformerSpec};

use ort::{
    environment::Environment,
    session::{Session, builder::GraphOptimizationLevel},
};

/// The ORT release xlmc is built and tested against (`ort`'s `api-30`; 1.30–1.32 work).
pub const ORT_VERSION: &str = "1.30.0";
/// File name of the shared library inside the wheel.
pub const LIBRARY_FILE: &str = "libonnxruntime.so.1.30.0";
/// Environment variable that, when set, names the library to load (ort's own convention).
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";
/// Where `./xlmc setup` puts the library, relative to a `.deps` folder.
const DEPS_RELATIVE: &str = "onnxruntime/capi";
/// The absolute `.deps` folder of the checkout this binary was built in (set by .cargo/config.toml).
const BUILD_DEPS_DIR: Option<&str> = option_env!("XLMC_DEPS_DIR");

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime {ORT_VERSION} not found; looked in: {}. Run `./xlmc setup` in the checkout, \
         or set {LIBRARY_ENV} to the path of {LIBRARY_FILE}",
        .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound(Vec<PathBuf>),
    #[error("{LIBRARY_ENV}={0} does not exist")]
    EnvPathMissing(PathBuf),
    #[error("loading ONNX Runtime from {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("ONNX Runtime session: {0}")]
    Session(#[from] ort::Error),
    #[error("bundle: {0}")]
    Bundle(String),
    #[error("source of {got} tokens (with its two </s>) exceeds the model's {max} positions")]
    TooLong { got: usize, max: i64 },
}

/// Row-state operations on host arrays cannot fail.
impl From<std::convert::Infallible> for RuntimeError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// Finds libonnxruntime, first match wins:
/// 1. `$ORT_DYLIB_PATH` (an error if it names a missing file);
/// 2. next to the executable, or in `../lib` beside it (installed or container layout);
/// 3. `.deps/onnxruntime/capi/` in any folder above the executable (a checkout's `target/...`);
/// 4. the `.deps` of the checkout the binary was built in.
pub fn locate_library() -> Result<PathBuf, RuntimeError> {
    if let Some(path) = env::var_os(LIBRARY_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() { Ok(path) } else { Err(RuntimeError::EnvPathMissing(path)) };
    }
    let exe_dir = env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf));
    let candidates = candidate_paths(exe_dir.as_deref(), BUILD_DEPS_DIR.map(Path::new));
    candidates.iter().find(|p| p.is_file()).cloned().ok_or(RuntimeError::NotFound(candidates))
}

fn candidate_paths(exe_dir: Option<&Path>, build_deps: Option<&Path>) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(dir) = exe_dir {
        paths.push(dir.join(LIBRARY_FILE));
        paths.push(dir.join("../lib").join(LIBRARY_FILE));
        paths.extend(dir.ancestors().map(|a| a.join(".deps").join(DEPS_RELATIVE).join(LIBRARY_FILE)));
    }
    if let Some(deps) = build_deps {
        paths.push(deps.join(DEPS_RELATIVE).join(LIBRARY_FILE));
    }
    paths
}

/// Loads ORT and creates the process-wide environment on first use; later calls return it.
/// A failure is remembered too, so every caller gets the same clear error.
pub fn environment() -> Result<&'static Environment, RuntimeError> {
    static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();
    let loaded = ENVIRONMENT.get_or_init(|| {
        let path = locate_library().map_err(|e| e.to_string())?;
        tracing::debug!(path = %path.display(), "loading ONNX Runtime");
        let builder = ort::init_from(&path).map_err(|e| format!("loading {}: {e}", path.display()))?;
        builder.with_name("xlmc").build().map_err(|e| format!("creating ORT environment: {e}"))
    });
    loaded
        .as_ref()
        .map_err(|message| RuntimeError::Load { path: locate_library().unwrap_or_default(), message: message.clone() })
}

/// Graph fusions left out on the CPU because their kernels are slower than the nodes they fuse.
const CPU_SLOWER_FUSIONS: &str = "SkipLayerNormFusion";

/// How sessions are built: the same optimisation level and threading everywhere.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Threads inside one operator (ORT's intra-op pool); 0 lets ORT choose.
    pub intra_threads: usize,
    /// Ask for ORT's CUDA execution provider. When the loaded ONNX Runtime has none (the CPU
    /// wheel) sessions run on the CPU and one warning says so.
    pub cuda: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self { intra_threads: 1, cuda: false }
    }
}

/// Whether CUDA can be asked of ORT: this build has the `cuda` feature and the loaded ONNX
/// Runtime was built with the CUDA execution provider (the `onnxruntime-gpu` library).
#[cfg(feature = "cuda")]
pub fn cuda_available() -> bool {
    use ort::ep::ExecutionProvider;
    environment().is_ok() && ort::ep::CUDA::is_available().unwrap_or(false)
}

#[cfg(not(feature = "cuda"))]
pub fn cuda_available() -> bool {
    false
}

/// A bundle's manifest config as `Spec` and its encoder and decoder sessions: what every ORT step
/// model loads.
pub(crate) fn open_bundle<Spec: serde::de::DeserializeOwned>(
    bundle: &xlmc_bundle::Bundle,
    options: &SessionOptions,
) -> Result<(Spec, Session, Session), RuntimeError> {
    let spec: Spec = serde_json::from_value(bundle.manifest.config.clone())
        .map_err(|e| RuntimeError::Bundle(format!("{}: config: {e}", bundle.dir.display())))?;
    let env = environment()?;
    let encoder = options.once_per_batch_from_file(env, &bundle.file(ENCODER_FILE))?;
    let decoder = options.from_file(env, &bundle.file(DECODER_FILE))?;
    Ok((spec, encoder, decoder))
}

impl SessionOptions {
    pub fn from_file(&self, env: &Environment, path: &Path) -> Result<Session, RuntimeError> {
        Ok(self.builder(env)?.commit_from_file(path)?)
    }

    /// A session for a graph run once per batch (an encoder), whose intra-op workers sleep as
    /// soon as it returns instead of spinning for more work: the decoder's steps come next, on
    /// the same cores, from another session with its own workers. (With 2 threads on 2 cores the
    /// encoder's spinning worker took about half a core through every decoder step.)
    pub(crate) fn once_per_batch_from_file(&self, env: &Environment, path: &Path) -> Result<Session, RuntimeError> {
        let mut builder = self.builder(env)?.with_intra_op_spinning(false).map_err(ort::Error::<()>::from)?;
        Ok(builder.commit_from_file(path)?)
    }

    pub fn from_memory(&self, env: &Environment, model: &[u8]) -> Result<Session, RuntimeError> {
        Ok(self.builder(env)?.commit_from_memory(model)?)
    }

    fn builder(&self, env: &Environment) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
        let builder = Session::builder(env)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(ort::Error::<()>::from)?;
        let builder = builder.with_intra_threads(self.intra_threads).map_err(ort::Error::<()>::from)?;
        if !self.cuda {
            // ORT's CPU SkipLayerNormalization is slower than the Add and LayerNormalization it
            // replaces (measured on the 6-2 student's decoder step: 3–8% per step).
            return builder.with_disabled_optimizers(CPU_SLOWER_FUSIONS).map_err(ort::Error::<()>::from);
        }
        static WARNED: std::sync::Once = std::sync::Once::new();
        if !cuda_available() {
            WARNED.call_once(|| {
                tracing::warn!(
                    library = %locate_library().unwrap_or_default().display(),
                    built_with_cuda = cfg!(feature = "cuda"),
                    "the CUDA execution provider was asked for, but this build (feature `cuda`) or this ONNX Runtime \
                     (onnxruntime-gpu) lacks it; running on the CPU"
                )
            });
            return Ok(builder);
        }
        Self::with_cuda(builder)
    }

    #[cfg(feature = "cuda")]
    fn with_cuda(
        builder: ort::session::builder::SessionBuilder,
    ) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
        tracing::info!("ONNX Runtime: CUDA execution provider");
        builder.with_execution_providers([ort::ep::CUDA::default().build()]).map_err(ort::Error::<()>::from)
    }

    #[cfg(not(feature = "cuda"))]
    fn with_cuda(
        builder: ort::session::builder::SessionBuilder,
    ) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkout_layout_is_searched_upwards_from_the_binary() {
        let paths = candidate_paths(Some(Path::new("/repo/target/release")), None);
        assert!(paths.contains(&PathBuf::from("/repo/.deps/onnxruntime/capi/libonnxruntime.so.1.30.0")));
        assert_eq!(paths[0], PathBuf::from("/repo/target/release/libonnxruntime.so.1.30.0"));
    }

    #[test]
    fn build_checkout_is_the_last_resort() {
        let paths = candidate_paths(Some(Path::new("/opt/x/bin")), Some(Path::new("/src/.deps")));
        assert_eq!(paths.last().unwrap(), &PathBuf::from("/src/.deps/onnxruntime/capi/libonnxruntime.so.1.30.0"));
    }

    #[test]
    fn library_is_found_in_this_checkout() {
        // `./xlmc setup` ran before the tests; this is what every binary relies on.
        let path = locate_library().expect("ORT library");
        assert!(path.ends_with(LIBRARY_FILE), "{}", path.display());
    }
}
