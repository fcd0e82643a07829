//! Embeds an rpath to libtorch in every binary and test of the package, so they run without
//! LD_LIBRARY_PATH. libtorch comes from the PyPI torch wheel (see scripts/setup.sh); `LIBTORCH`
//! is set by .cargo/config.toml or by the user. It also compiles the two small C++ shims over
//! libtorch's C++ API: the classifier's TorchScript module, which tch cannot freeze
//! (src/classify/script.cpp), and a CUDA stream of its own (src/classify/cuda_stream.cpp).

use std::path::PathBuf;

fn main() {
    r2r_services();
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(root) = std::env::var_os("LIBTORCH") else {
        panic!(
            "LIBTORCH is not set. It names the libtorch (with its include folder) that tch and \
             the classifier's C++ shim build against; .cargo/config.toml sets it to \
             .venv/libtorch, which scripts/setup.sh installs."
        );
    };
    let root = PathBuf::from(root);
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let lib = root.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    shims(&root);
}

/// Compiles the C++ shims (src/classify/script.cpp, cuda_stream.cpp) against libtorch's
/// headers and links them to libtorch_cpu and libc10. The headers are the ones tch's own C++
/// wrapper needs, so a libtorch tch builds against has them.
fn shims(root: &std::path::Path) {
    const FILES: [&str; 2] = ["src/classify/script.cpp", "src/classify/cuda_stream.cpp"];
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let header = root.join("include/torch/csrc/jit/api/module.h");
    assert!(
        header.is_file(),
        "{} is missing: LIBTORCH must name a libtorch with its C++ headers",
        header.display()
    );
    // libtorch's headers as system headers: their unused parameters are not ours to warn of.
    cc::Build::new()
        .cpp(true)
        .files(FILES)
        .flag("-isystem")
        .flag(root.join("include").to_string_lossy().as_ref())
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .compile("coin_sorter_shims");
    println!("cargo:rustc-link-search=native={}", root.join("lib").display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// With the `r2r` feature, r2r generates Rust types for the interfaces of the sourced
/// workspace. The sorter's `~/enable` and `~/reload_model` need `std_srvs` among them; when r2r
/// will generate it (found as r2r looks for packages, not excluded by `IDL_PACKAGE_FILTER`),
/// cfg `coin_sorter_std_srvs` turns the services on.
fn r2r_services() {
    println!("cargo::rustc-check-cfg=cfg(coin_sorter_std_srvs)");
    for var in
        ["AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "CMAKE_IDL_PACKAGES", "IDL_PACKAGE_FILTER"]
    {
        println!("cargo:rerun-if-env-changed={var}");
    }
    // r2r's bundled bindings (feature r2r-doc-only) have no std_srvs, whatever is sourced.
    if std::env::var_os("CARGO_FEATURE_R2R").is_none()
        || std::env::var_os("CARGO_FEATURE_R2R_DOC_ONLY").is_some()
    {
        return;
    }
    let filtered_out =
        std::env::var("IDL_PACKAGE_FILTER").is_ok_and(|f| !f.split(';').any(|p| p == "std_srvs"));
    let found = match std::env::var("CMAKE_IDL_PACKAGES") {
        Ok(dirs) => dirs.split(':').any(|d| d.trim_end_matches('/').ends_with("std_srvs/cmake")),
        Err(_) => ["AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .flat_map(|paths| paths.split(':').map(PathBuf::from).collect::<Vec<_>>())
            .any(|prefix| {
                prefix.join("share/ament_index/resource_index/rosidl_interfaces/std_srvs").exists()
            }),
    };
    if found && !filtered_out {
        println!("cargo:rustc-cfg=coin_sorter_std_srvs");
    }
}
