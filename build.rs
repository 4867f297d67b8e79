//! Build script: sets the shared library's SONAME. (GPU kernel compilation is added under
//! the `cuda` / `rocm` features.) Writes only to OUT_DIR; never probes the machine's GPU.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap();
    // While 0.x every minor release may break the ABI, so the SONAME carries the minor too.
    let soname = if major == "0" { format!("libpagedkv.so.0.{minor}") } else { format!("libpagedkv.so.{major}") };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    println!("cargo:rustc-env=PKV_SONAME={soname}");
}
