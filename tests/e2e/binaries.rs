//! The release promise: `exporter` and `server` run from a checkout with no environment at all.

use std::process::Command;

use xlmc_tests::{ServerProcess, binary};

fn run_clean(name: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(binary(name)).env_clear().args(args).output().expect("run binary");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn help_runs_without_any_environment() {
    for name in ["exporter", "server"] {
        let (ok, text) = run_clean(name, &["--help"]);
        assert!(ok, "{name} --help failed: {text}");
        assert!(text.contains(&format!("Usage: {name}")), "{text}");
    }
}

#[test]
fn doctor_finds_libtorch_and_onnxruntime_by_itself() {
    let (ok, text) = run_clean("exporter", &["doctor"]);
    assert!(ok, "{text}");
    for line in ["torch cpu fwd/bwd      ok", "ort onnx graph         ok"] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

#[test]
fn asking_for_cuda_without_a_gpu_is_a_clear_error() {
    if tch_sees_cuda() {
        return; // a GPU machine: the CUDA path is exercised by `doctor --device cuda` there
    }
    let (ok, text) = run_clean("exporter", &["doctor", "--device", "cuda"]);
    assert!(!ok);
    assert!(text.contains("--device cuda"), "{text}");
}

fn tch_sees_cuda() -> bool {
    run_clean("exporter", &["doctor"]).1.contains("device(s), cuDNN")
}

#[test]
fn libraries_resolve_without_ld_library_path() {
    let output = Command::new("ldd").arg(binary("exporter")).env_clear().output().expect("run ldd");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("libtorch_cpu.so => /"), "libtorch not resolved through rpath:\n{text}");
    assert!(!text.contains("not found"), "unresolved libraries:\n{text}");

    // The tests' server is built with the `torch` feature (its libtorch backend is tested too):
    // it resolves libtorch through its own rpath. The slim build (no feature, what the image
    // ships) is checked to link no libtorch by `./xlmc test` after this suite.
    let output = Command::new("ldd").arg(binary("server")).env_clear().output().expect("run ldd");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("not found"), "unresolved libraries:\n{text}");
    assert!(!text.contains("libonnxruntime"), "ONNX Runtime is loaded at run time, not linked:\n{text}");
}

/// The container layout (Dockerfile's runtime stage): `bin/server` beside `lib/libonnxruntime…`,
/// no checkout around, no environment. The server must load the library from `../lib`.
#[test]
fn server_finds_onnxruntime_in_an_install_layout() {
    let root = std::env::temp_dir().join(format!("xlmc-install-{}", std::process::id()));
    let (bin, lib) = (root.join("bin"), root.join("lib"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(binary("server"), bin.join("server")).unwrap();
    let library = xlmc_runtime::locate_library().expect("ORT in the checkout");
    let installed = lib.join(xlmc_runtime::LIBRARY_FILE);
    std::fs::copy(&library, &installed).unwrap();

    let server = ServerProcess::start_binary(&bin.join("server"), &[]);
    let loaded = server.onnxruntime.clone();
    assert!(server.terminate().success());
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(loaded, bin.join("../lib").join(xlmc_runtime::LIBRARY_FILE));
}

#[test]
fn server_without_onnxruntime_fails_naming_where_it_looked() {
    let output = Command::new(binary("server"))
        .env_clear()
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .output()
        .expect("run server");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so does not exist"), "{text}");
}
