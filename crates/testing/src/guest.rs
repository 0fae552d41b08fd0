//! The test guest and the images tests hand it.
//!
//! `guest/build.sh` builds the guest (Debian's cloud kernel, busybox, an ext4 data disk);
//! tests find it through [`guest_dir`]. [`make_iso`] makes the ISO 9660 images tests import,
//! put in CD-ROM drives and boot from.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The test guest built by guest/build.sh: `PORTHOLE_TEST_GUEST`, or `target/guest`.
pub fn guest_dir() -> PathBuf {
    let dir = std::env::var_os("PORTHOLE_TEST_GUEST").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guest"),
        PathBuf::from,
    );
    assert!(
        dir.join("vmlinuz").is_file(),
        "the test guest is missing at {}; build it with guest/build.sh target/guest",
        dir.display()
    );
    dir
}

/// Makes `dir/<name>.iso` with genisoimage: an ISO 9660 image with Rock Ridge names,
/// labelled `label`, holding `files` (name and contents) in its root directory. The files
/// are laid out in `dir/<name>-root` first. Returns the image's path.
pub fn make_iso(dir: &Path, name: &str, label: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = dir.join(format!("{name}-root"));
    std::fs::create_dir_all(&root).unwrap();
    for (file, contents) in files {
        std::fs::write(root.join(file), contents).unwrap();
    }
    let iso = dir.join(format!("{name}.iso"));
    let made = Command::new("genisoimage")
        .args([
            "-quiet",
            "-input-charset",
            "utf-8",
            "-rock",
            "-volid",
            label,
        ])
        .arg("-o")
        .arg(&iso)
        .arg(&root)
        .status()
        .expect("genisoimage is installed by scripts/setup");
    assert!(made.success(), "genisoimage failed: {made}");
    iso
}
