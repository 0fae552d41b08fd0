//! The fast tier: the plane's API, web UI and console gateway in this process
//! (`porthole_testing::app::TestApp`): the real router and services over a fresh SQLite
//! database, with an in-memory driver as the `local` node that keeps the same `Driver`
//! contract as the QEMU driver. Nothing here needs QEMU, a guest, Node or Chromium; the
//! guest tier (`porthole`'s `tests/guests`) boots real ones.

mod bad_input;
mod capabilities;
mod consoles;
mod portal;
mod tokens;
mod web;

use porthole_plane::PlaneConfig;
use porthole_testing::app::TestApp;

/// A plane with the approved `demo` template, as `porthole serve --demo` has it.
pub async fn demo_app() -> TestApp {
    demo_app_with(|_| {}).await
}

/// [`demo_app`], with settings `configure` changes first.
pub async fn demo_app_with(configure: impl FnOnce(&mut PlaneConfig)) -> TestApp {
    let app = TestApp::start_with(configure).await;
    app.template("demo", true).await;
    app
}
