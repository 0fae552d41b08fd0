//! Checks that web/node_modules holds what web/package-lock.json pins, because the console
//! pages embed noVNC and xterm.js from there. It installs nothing: `scripts/setup` runs
//! `npm ci`, so a plain `cargo build` needs neither Node nor the network.

use std::path::Path;

/// Files the embedded assets cannot do without (see `controllers/assets.rs`).
const REQUIRED: [&str; 3] = [
    "@novnc/novnc/core/rfb.js",
    "@xterm/xterm/lib/xterm.mjs",
    "@xterm/addon-fit/lib/addon-fit.mjs",
];

fn main() {
    // At run time, not `env!`: a build script compiled once may run for another checkout
    // that shares the target directory.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let web = Path::new(&manifest).join("../../web");
    let lock = web.join("package-lock.json");
    let modules = web.join("node_modules");
    let installed = modules.join(".package-lock.json");
    println!("cargo:rerun-if-changed={}", lock.display());
    println!("cargo:rerun-if-changed={}", installed.display());
    println!("cargo:rerun-if-changed={}", web.join("app").display());
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let problem = if REQUIRED.iter().any(|file| !modules.join(file).is_file()) {
        Some("is missing noVNC or xterm.js")
    } else if matches!((modified(&installed), modified(&lock)), (Some(i), Some(l)) if i < l) {
        Some("is older than web/package-lock.json")
    } else {
        None
    };
    if let Some(problem) = problem {
        eprintln!(
            "web/node_modules {problem}: run scripts/setup (or `npm ci` in web/) before building"
        );
        std::process::exit(1);
    }
}
