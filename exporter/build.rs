//! tch's link arguments stop at its own crate, so binaries and tests here ask for libtorch
//! themselves: an rpath to the wheel's lib folder, so no LD_LIBRARY_PATH is needed.
//!
//! libtorch_cuda is deliberately *not* linked (`--no-as-needed -ltorch` would pull it in): it
//! needs cuBLAS, cuDNN, NCCL… which a CPU machine does not have, and the binary would not start
//! at all. `torch_device::select` loads it at run time when CUDA is asked for, before libtorch
//! is first asked about CUDA. Its folder is recorded here for that.

fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-env=XLMC_LIBTORCH_LIB={lib}");
    }
}
