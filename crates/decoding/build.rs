//! With the `tch` feature, unit-test binaries of this crate link libtorch; give them the rpath
//! binaries get (see exporter/build.rs).

fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
