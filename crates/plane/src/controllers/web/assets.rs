//! Browser assets, embedded in the binary from an explicit list: noVNC and xterm.js as
//! `npm ci` installed them from web/package-lock.json, and porthole's own scripts in
//! web/app. Nothing else on disk is ever served.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::error::ApiError;

#[derive(RustEmbed)]
#[folder = "../../web/node_modules/"]
#[include = "@novnc/novnc/core/**/*.js"]
#[include = "@novnc/novnc/vendor/pako/lib/**/*.js"]
#[include = "@novnc/novnc/LICENSE.txt"]
#[include = "@xterm/xterm/lib/xterm.mjs"]
#[include = "@xterm/xterm/css/xterm.css"]
#[include = "@xterm/xterm/LICENSE"]
#[include = "@xterm/addon-fit/lib/addon-fit.mjs"]
#[include = "@xterm/addon-fit/LICENSE"]
struct Vendor;

#[derive(RustEmbed)]
#[folder = "../../web/app/"]
struct Own;

/// URL prefixes and where they map to.
const MOUNTS: [(&str, &str); 3] = [
    ("novnc/", "@novnc/novnc/"),
    ("xterm/", "@xterm/xterm/"),
    ("xterm-fit/", "@xterm/addon-fit/"),
];

/// `GET /assets/{*path}`.
pub async fn asset(Path(path): Path<String>) -> Result<Response, ApiError> {
    let missing = || ApiError::NotFound(format!("no asset {path:?}"));
    let (file, cache) = if let Some(own) = path.strip_prefix("app/") {
        (Own::get(own).ok_or_else(missing)?, "no-cache")
    } else {
        let (prefix, package) = MOUNTS
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .ok_or_else(missing)?;
        let embedded = format!("{package}{}", &path[prefix.len()..]);
        (
            Vendor::get(&embedded).ok_or_else(missing)?,
            "public, max-age=86400",
        )
    };
    let content_type = match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    };
    let headers = [
        (CONTENT_TYPE, content_type),
        (CACHE_CONTROL, cache),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    Ok((headers, file.data.into_owned()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_pages_find_their_modules() {
        for needed in [
            "@novnc/novnc/core/rfb.js",
            "@novnc/novnc/vendor/pako/lib/zlib/inflate.js",
            "@xterm/xterm/lib/xterm.mjs",
        ] {
            assert!(Vendor::get(needed).is_some(), "{needed} is not embedded");
        }
        assert!(
            Vendor::get("@novnc/novnc/package.json").is_none(),
            "only listed files are embedded"
        );
        assert!(Vendor::get("playwright-core/package.json").is_none());
        for own in ["vnc.js", "serial.js", "console.js", "style.css"] {
            assert!(Own::get(own).is_some(), "{own}");
        }
    }

    #[tokio::test]
    async fn paths_outside_the_mounts_are_not_served() {
        for path in [
            "../Cargo.toml",
            "novnc/../../../etc/passwd",
            "playwright-core/package.json",
            "app/../build.rs",
        ] {
            assert!(asset(Path(path.to_owned())).await.is_err(), "{path}");
        }
        let response = asset(Path("novnc/core/rfb.js".to_owned())).await.unwrap();
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
    }
}
