//! With the `torch` feature, the binaries and test binaries find libtorch through an rpath to
//! the wheel's lib folder (tch's own link arguments stop at its crate); without it nothing links
//! libtorch.

fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
