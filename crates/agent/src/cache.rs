//! Template and ISO images cached on an agent's host.
//!
//! The plane keeps every template and ISO. The first VM on a host that needs one makes the
//! agent fetch it from the plane over mutual TLS, check its SHA-256 against the one the plane
//! recorded at import, and keep it under `templates/ID/` or `isos/ID.iso`. Later VMs are
//! qcow2 overlays on the cached copy, so creating them costs no transfer at all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use porthole_core::driver::{DriverError, Progress};
use porthole_core::{IsoId, TemplateId};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::enrol::PlaneLink;
use crate::wire::Cached;
use crate::wire::SHA256_HEADER;

/// The cached files of one template.
#[derive(Debug, Clone)]
pub struct CachedTemplate {
    /// The base disk.
    pub disk: PathBuf,
    /// The kernel for direct boot, if the template has one.
    pub kernel: Option<PathBuf>,
    /// The initrd, if the template has one.
    pub initrd: Option<PathBuf>,
}

/// The agent's image cache.
#[derive(Debug)]
pub struct TemplateCache {
    dir: PathBuf,
    isos: PathBuf,
    plane: Arc<PlaneLink>,
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl TemplateCache {
    /// A cache with templates in `dir` and ISOs in `isos`, filled from `plane`.
    pub fn new(dir: PathBuf, isos: PathBuf, plane: Arc<PlaneLink>) -> Self {
        Self {
            dir,
            isos,
            plane,
            fetching: Mutex::default(),
        }
    }

    /// The images cached now.
    pub fn cached(&self) -> Cached {
        Cached {
            templates: ids_in(&self.dir, ""),
            isos: ids_in(&self.isos, ".iso"),
        }
    }

    /// Where ISO `id` is cached.
    fn iso_path(&self, id: IsoId) -> PathBuf {
        self.isos.join(format!("{id}.iso"))
    }

    /// Removes template `id`'s cached files. The caller checks that no VM uses them.
    pub async fn evict_template(&self, id: TemplateId) -> Result<(), DriverError> {
        let lock = self.lock(format!("template {id}"));
        let _held = lock.lock().await;
        let dir = self.dir.join(id.to_string());
        gone(&dir, tokio::fs::remove_dir_all(&dir).await)
    }

    /// Removes ISO `id`'s cached file. The caller checks that no VM uses it.
    pub async fn evict_iso(&self, id: IsoId) -> Result<(), DriverError> {
        let lock = self.lock(format!("iso {id}"));
        let _held = lock.lock().await;
        let path = self.iso_path(id);
        gone(&path, tokio::fs::remove_file(&path).await)
    }

    /// One download of `key` at a time; a second caller waits and finds it cached.
    fn lock(&self, key: String) -> Arc<tokio::sync::Mutex<()>> {
        let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(fetching.entry(key).or_default())
    }

    /// ISO `id`'s file, fetched now if it is not cached yet.
    pub async fn ensure_iso(
        &self,
        id: IsoId,
        progress: &dyn Progress,
    ) -> Result<PathBuf, DriverError> {
        let path = self.iso_path(id);
        if !path.exists() {
            let lock = self.lock(format!("iso {id}"));
            let _held = lock.lock().await;
            if !path.exists() {
                tokio::fs::create_dir_all(&self.isos)
                    .await
                    .map_err(|e| DriverError::io(format!("creating {}", self.isos.display()), e))?;
                let report = |fraction: f32, step: &str| progress.update(fraction * 0.9, step);
                let what = format!("ISO {id}");
                self.fetch(&format!("/agent/v1/isos/{id}"), &what, &path, &report)
                    .await?;
            }
        }
        Ok(path)
    }

    /// The template's files, fetched now if they are not cached yet.
    pub async fn ensure(
        &self,
        id: TemplateId,
        kernel: bool,
        initrd: bool,
        progress: &dyn Progress,
    ) -> Result<CachedTemplate, DriverError> {
        let dir = self.dir.join(id.to_string());
        let mut parts = vec!["disk"];
        parts.extend(kernel.then_some("kernel"));
        parts.extend(initrd.then_some("initrd"));
        if parts.iter().any(|part| !dir.join(part).exists()) {
            let lock = self.lock(format!("template {id}"));
            let _held = lock.lock().await;
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| DriverError::io(format!("creating {}", dir.display()), e))?;
            let count = parts.len() as f32;
            for (index, part) in parts.iter().enumerate() {
                let path = dir.join(part);
                if path.exists() {
                    continue;
                }
                let scaled = |fraction: f32, step: &str| {
                    progress.update((index as f32 + fraction) / count * 0.9, step);
                };
                let what = format!("template {id}'s {part}");
                self.fetch(
                    &format!("/agent/v1/templates/{id}/{part}"),
                    &what,
                    &path,
                    &scaled,
                )
                .await?;
            }
        }
        let path = |wanted: bool, part: &str| wanted.then(|| dir.join(part));
        Ok(CachedTemplate {
            disk: dir.join("disk"),
            kernel: path(kernel, "kernel"),
            initrd: path(initrd, "initrd"),
        })
    }

    /// Downloads `what` from `url_path` on the plane to `path`, checking its SHA-256.
    async fn fetch(
        &self,
        url_path: &str,
        what: &str,
        path: &Path,
        progress: &(dyn Fn(f32, &str) + Sync),
    ) -> Result<(), DriverError> {
        let unreachable = |e: reqwest::Error| {
            DriverError::Unreachable(format!("fetching {what} from the plane: {e}"))
        };
        let response = self.plane.get(url_path).send().await.map_err(unreachable)?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(DriverError::BadImage(format!(
                "the plane refused {what} ({status}): {body}"
            )));
        }
        let expected = response
            .headers()
            .get(SHA256_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| {
                DriverError::BadImage(format!("the plane sent {what} without its SHA-256"))
            })?;
        let total = response.content_length().unwrap_or(0);
        let partial = path.with_extension("partial");
        let io = |what: &str, e| DriverError::io(format!("{what} {}", partial.display()), e);
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| io("creating", e))?;
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut body = response.bytes_stream();
        let step = format!("fetching {what} from the plane");
        progress(0.0, &step);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(unreachable)?;
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| io("writing", e))?;
            received += chunk.len() as u64;
            if total > 0 {
                progress(received as f32 / total as f32, &step);
            }
        }
        file.sync_all().await.map_err(|e| io("syncing", e))?;
        drop(file);
        let actual = hex::encode(hasher.finalize());
        if actual != expected {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(DriverError::BadImage(format!(
                "{what} arrived with SHA-256 {actual}, but the plane recorded {expected}; \
                 nothing was cached"
            )));
        }
        tokio::fs::rename(&partial, path)
            .await
            .map_err(|e| io("renaming", e))?;
        tracing::info!(image = %what, bytes = received, "image cached");
        Ok(())
    }
}

/// The ids named by the entries of `dir` that end in `suffix`.
fn ids_in<T: std::str::FromStr>(dir: &Path, suffix: &str) -> Vec<T> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()?
                .strip_suffix(suffix)?
                .parse()
                .ok()
        })
        .collect()
}

/// The outcome of removing `path`: already gone counts as removed.
fn gone(path: &Path, removed: std::io::Result<()>) -> Result<(), DriverError> {
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(DriverError::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}
