//! The saved login: which plane, and the token for it.
//!
//! Kept in `$XDG_CONFIG_HOME/porthole/credentials.toml` (or `PORTHOLE_CONFIG`), readable only
//! by its owner. `PORTHOLE_TOKEN` overrides the saved token, for scripts.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Where a plane runs by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// What `porthole login` saves.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// The plane's URL.
    pub url: Option<String>,
    /// The bearer token.
    pub token: Option<String>,
}

fn path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PORTHOLE_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    let dir = dirs::config_dir().context("cannot find a config directory; set PORTHOLE_CONFIG")?;
    Ok(dir.join("porthole").join("credentials.toml"))
}

impl Credentials {
    /// The saved credentials, or none.
    pub fn load() -> anyhow::Result<Self> {
        let path = path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Saves the credentials, readable only by this user.
    pub fn save(&self) -> anyhow::Result<()> {
        let path = path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = toml::to_string(self)?;
        let staged = path.with_extension("partial");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&staged)
            .with_context(|| format!("writing {}", staged.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&staged, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Forgets the saved token.
    pub fn forget_token(mut self) -> anyhow::Result<()> {
        self.token = None;
        self.save()
    }

    /// The token to use: `PORTHOLE_TOKEN`, else the saved one.
    pub fn token(&self) -> anyhow::Result<String> {
        if let Ok(token) = std::env::var("PORTHOLE_TOKEN")
            && !token.is_empty()
        {
            return Ok(token);
        }
        match &self.token {
            Some(token) => Ok(token.clone()),
            None => bail!("not logged in: run `porthole login` first"),
        }
    }
}
