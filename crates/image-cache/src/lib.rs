//! Copies of the plane's images on a host that does not share its disk.
//!
//! The plane keeps every template and ISO. A node whose driver runs elsewhere (an agent's
//! host today) keeps an [`ImageCache`]: the first VM there that needs a file makes the cache
//! fetch it from an [`ImageSource`], check its SHA-256 against the one the plane recorded at
//! import, and keep it. Later VMs are qcow2 overlays on the cached copy, so making them
//! costs no transfer at all.
//!
//! ```text
//! <templates>/<id>/{disk, kernel, initrd}
//! <isos>/<id>.iso
//! ```
//!
//! A fetch goes:
//! 1. one download per file at a time: a second caller waits, then finds it cached;
//! 2. the bytes stream into `NAME.partial`, hashed on the way, with progress;
//! 3. a SHA-256 that differs from the recorded one removes the partial file and fails;
//!    otherwise the file is renamed into place, so a cached file is always a whole one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use porthole_core::driver::{DriverError, Progress};
use porthole_core::image::{ImageFile, ImageFiles, ImageSource};
use porthole_core::{IsoId, TemplateId};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// The images a host keeps, fetched from the plane on first use.
#[derive(Debug)]
pub struct ImageCache {
    templates: PathBuf,
    isos: PathBuf,
    source: Arc<dyn ImageSource>,
    fetching: Mutex<HashMap<ImageFile, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImageCache {
    /// A cache with templates in `templates` and ISOs in `isos`, filled from `source`.
    pub fn new(templates: PathBuf, isos: PathBuf, source: Arc<dyn ImageSource>) -> Self {
        Self {
            templates,
            isos,
            source,
            fetching: Mutex::default(),
        }
    }

    /// The templates with at least one cached file.
    pub fn cached_templates(&self) -> Vec<TemplateId> {
        ids_in(&self.templates, "")
    }

    /// The cached ISOs.
    pub fn cached_isos(&self) -> Vec<IsoId> {
        ids_in(&self.isos, ".iso")
    }

    /// Where `file` is kept on this host.
    pub fn location(&self, file: ImageFile) -> PathBuf {
        match file {
            ImageFile::TemplateDisk(id) => self.templates.join(id.to_string()).join("disk"),
            ImageFile::TemplateKernel(id) => self.templates.join(id.to_string()).join("kernel"),
            ImageFile::TemplateInitrd(id) => self.templates.join(id.to_string()).join("initrd"),
            ImageFile::Iso(id) => self.isos.join(format!("{id}.iso")),
        }
    }

    /// Removes template `id`'s cached files. The caller checks that no VM uses them.
    pub async fn evict_template(&self, id: TemplateId) -> Result<(), DriverError> {
        let lock = self.lock(ImageFile::TemplateDisk(id));
        let _held = lock.lock().await;
        let dir = self.templates.join(id.to_string());
        gone(&dir, tokio::fs::remove_dir_all(&dir).await)
    }

    /// Removes ISO `id`'s cached file. The caller checks that no VM uses it.
    pub async fn evict_iso(&self, id: IsoId) -> Result<(), DriverError> {
        let lock = self.lock(ImageFile::Iso(id));
        let _held = lock.lock().await;
        let path = self.location(ImageFile::Iso(id));
        gone(&path, tokio::fs::remove_file(&path).await)
    }

    /// One download of a template's files, or of an ISO, at a time.
    fn lock(&self, file: ImageFile) -> Arc<tokio::sync::Mutex<()>> {
        let key = match file {
            ImageFile::TemplateKernel(id) | ImageFile::TemplateInitrd(id) => {
                ImageFile::TemplateDisk(id)
            }
            other => other,
        };
        let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(fetching.entry(key).or_default())
    }

    /// Downloads `file` from the source to `path`, checking its SHA-256.
    async fn fetch(
        &self,
        file: ImageFile,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        let step = format!("fetching {file} from the plane");
        progress.update(0.0, &step);
        let bytes = self.source.open(file).await?;
        let expected = bytes.sha256.to_ascii_lowercase();
        let total = bytes.length.unwrap_or(0);
        let partial = path.with_extension("partial");
        let io = |what: &str, e| DriverError::io(format!("{what} {}", partial.display()), e);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| DriverError::io(format!("creating {}", dir.display()), e))?;
        }
        let mut out = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| io("creating", e))?;
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut body = bytes.body;
        let copied = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                out.write_all(&chunk).await.map_err(|e| io("writing", e))?;
                received += chunk.len() as u64;
                if total > 0 {
                    progress.update(received as f32 / total as f32, &step);
                }
            }
            out.sync_all().await.map_err(|e| io("syncing", e))
        }
        .await;
        drop(out);
        let checked = copied.and_then(|()| {
            let actual = hex::encode(hasher.finalize());
            if actual == expected {
                Ok(())
            } else {
                Err(DriverError::BadImage(format!(
                    "{file} arrived with SHA-256 {actual}, but the plane recorded {expected}; \
                     nothing was cached"
                )))
            }
        });
        if let Err(e) = checked {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        tokio::fs::rename(&partial, path)
            .await
            .map_err(|e| io("renaming", e))?;
        tracing::info!(image = %file, bytes = received, "image cached");
        Ok(())
    }
}

#[async_trait]
impl ImageFiles for ImageCache {
    async fn path(&self, file: ImageFile, progress: &dyn Progress) -> Result<PathBuf, DriverError> {
        let path = self.location(file);
        if !path.exists() {
            let lock = self.lock(file);
            let _held = lock.lock().await;
            if !path.exists() {
                self.fetch(file, &path, progress).await?;
            }
        }
        Ok(path)
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use porthole_core::driver::NoProgress;
    use porthole_core::image::ImageBytes;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Serves fixed bytes, counting how often it was asked; `lie` sends a wrong hash.
    #[derive(Debug)]
    struct Fixed {
        bytes: Vec<u8>,
        lie: bool,
        opened: AtomicUsize,
    }

    #[async_trait]
    impl ImageSource for Fixed {
        async fn open(&self, file: ImageFile) -> Result<ImageBytes, DriverError> {
            if matches!(file, ImageFile::TemplateInitrd(_)) {
                return Err(DriverError::BadImage(format!("the plane keeps no {file}")));
            }
            self.opened.fetch_add(1, Ordering::SeqCst);
            let sha256 = if self.lie {
                "00".repeat(32)
            } else {
                hex::encode(Sha256::digest(&self.bytes))
            };
            let chunks: Vec<Result<Bytes, DriverError>> = self
                .bytes
                .chunks(3)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Ok(ImageBytes {
                sha256,
                length: Some(self.bytes.len() as u64),
                body: Box::pin(futures::stream::iter(chunks)),
            })
        }
    }

    fn cache(dir: &Path, lie: bool) -> (ImageCache, Arc<Fixed>) {
        let source = Arc::new(Fixed {
            bytes: b"a template's disk".to_vec(),
            lie,
            opened: AtomicUsize::new(0),
        });
        let cache = ImageCache::new(dir.join("templates"), dir.join("isos"), source.clone());
        (cache, source)
    }

    #[tokio::test]
    async fn a_file_is_fetched_once_checked_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, source) = cache(dir.path(), false);
        let id = TemplateId::random();
        let (a, b) = tokio::join!(
            cache.path(ImageFile::TemplateDisk(id), &NoProgress),
            cache.path(ImageFile::TemplateDisk(id), &NoProgress)
        );
        let path = a.unwrap();
        assert_eq!(path, b.unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"a template's disk");
        assert_eq!(source.opened.load(Ordering::SeqCst), 1);
        assert_eq!(cache.cached_templates(), vec![id]);

        cache.evict_template(id).await.unwrap();
        assert!(!path.exists());
        assert!(cache.cached_templates().is_empty());
        // Evicting what is gone is fine.
        cache.evict_template(id).await.unwrap();
    }

    #[tokio::test]
    async fn a_file_whose_hash_differs_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = cache(dir.path(), true);
        let id = IsoId::random();
        let err = cache
            .path(ImageFile::Iso(id), &NoProgress)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nothing was cached"), "{err}");
        assert!(
            std::fs::read_dir(dir.path().join("isos"))
                .unwrap()
                .next()
                .is_none()
        );
        let err = cache
            .path(ImageFile::TemplateInitrd(TemplateId::random()), &NoProgress)
            .await
            .unwrap_err();
        assert!(matches!(err, DriverError::BadImage(_)), "{err}");
    }
}
