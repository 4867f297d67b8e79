//! The committed header must be what cbindgen renders from the sources today.
//! `PKV_BLESS=1 cargo test --test header` rewrites it.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut rendered = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen renders the header")
        .write(&mut rendered);
    let rendered = String::from_utf8(rendered).unwrap();
    let path = root.join("include/pagedkv.h");
    if std::env::var_os("PKV_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "include/pagedkv.h is stale; regenerate it with `PKV_BLESS=1 cargo test --test header`"
    );
}
