//! Records libtorch's lib folder (the wheel's, at build time): `libtorch_cuda.so` is looked for
//! there first when CUDA is asked for.

fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-env=XLMC_LIBTORCH_LIB={lib}");
    }
}
