//! The login page.

use askama::Template;

use super::Chrome;

/// `GET /login`, and a refused login.
#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub chrome: Chrome,
    pub error: Option<String>,
    pub next: String,
    pub typed_username: String,
    /// Accessor mode: the realm to preselect.
    pub realm: Option<String>,
}
