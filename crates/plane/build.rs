//! Makes sure web/node_modules holds what web/package-lock.json pins, running `npm ci` when
//! it does not, because the console pages embed noVNC and xterm.js from there.

use std::path::Path;
use std::process::Command;

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let lock = web.join("package-lock.json");
    let installed = web.join("node_modules/.package-lock.json");
    println!("cargo:rerun-if-changed={}", lock.display());
    println!("cargo:rerun-if-changed={}", installed.display());
    println!("cargo:rerun-if-changed={}", web.join("app").display());
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = matches!((modified(&installed), modified(&lock)), (Some(i), Some(l)) if i >= l);
    if fresh {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&web)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`npm ci` in {} failed ({status}); the console pages need noVNC and xterm.js",
            web.display()
        ),
        Err(e) => panic!(
            "cannot run npm ({e}); install Node.js and npm, then run `npm ci` in {}",
            web.display()
        ),
    }
}
