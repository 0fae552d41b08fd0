//! The browser tests' scripts: `web/tests/*.mjs`, run by node, drive headless Chromium
//! through playwright-core (from `web/node_modules`, installed by `scripts/setup`).
//!
//! 1. A script logs in to the plane at `PORTHOLE_URL` as `PORTHOLE_USER`.
//! 2. It prints one JSON event a line on stdout as it goes, which the test reads and checks
//!    against the API and the guest.
//! 3. It saves what it captures (screenshots, canvases) in the directory `OUT`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::server::Server;

/// The front end's directory, `web/`.
pub fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

/// `node web/tests/<script>` against `server`, logging in as `user` with `password` and
/// saving what it captures in `out`. Its events come on stdout (piped); its own messages go
/// to the test's stderr. Callers add the script's other variables and spawn it.
pub fn browser_script(
    script: &str,
    server: &Server,
    user: &str,
    password: &str,
    out: &Path,
) -> Command {
    let mut command = Command::new("node");
    command
        .arg(web_dir().join("tests").join(script))
        .env("PORTHOLE_URL", &server.url)
        .env("PORTHOLE_USER", user)
        .env("PORTHOLE_PASSWORD", password)
        .env("OUT", out)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// One line a browser script printed, as the JSON event it must be.
pub fn script_event(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|_| panic!("not an event: {line}"))
}
