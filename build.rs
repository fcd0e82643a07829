//! Embeds an rpath to libtorch in every binary and test of the package, so they run without
//! LD_LIBRARY_PATH. libtorch comes from the PyPI torch wheel (see scripts/setup.sh); `LIBTORCH`
//! is set by .cargo/config.toml or by the user.

use std::path::PathBuf;

fn main() {
    r2r_services();
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(root) = std::env::var_os("LIBTORCH") else {
        println!("cargo:warning=LIBTORCH is not set; binaries will need LD_LIBRARY_PATH");
        return;
    };
    let root = PathBuf::from(root);
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let lib = root.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
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
