//! Embeds an rpath to libtorch in every binary and test of the package, so they run without
//! LD_LIBRARY_PATH. libtorch comes from the PyPI torch wheel (see scripts/setup.sh); `LIBTORCH`
//! is set by .cargo/config.toml or by the user.

use std::path::PathBuf;

fn main() {
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
