//! Template and ISO files under the data directory.
//!
//! ```text
//! <data-dir>/templates/<id>/{disk, vmlinuz, initrd}
//! <data-dir>/isos/<id>.iso
//! <data-dir>/incoming/<random>/          uploads in progress
//! ```
//!
//! An import goes:
//! 1. each uploaded part streams into a [`Staging`] directory, hashed on the way;
//! 2. the files are verified: a disk must be a self-contained qcow2 or raw image, a kernel an
//!    x86 bzImage, an ISO an ISO 9660 image;
//! 3. the staging directory is renamed into place and only then the row is written.
//!
//! A failed or interrupted import leaves nothing: [`Staging`] removes its directory when
//! dropped uncommitted, and leftovers of a crash are swept at start-up.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use porthole_core::driver::{DriverError, Progress};
use porthole_core::image::{ImageFile, ImageFiles};
use porthole_core::{IsoId, TemplateId};
use porthole_store::images::TemplateRecord;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;

/// Largest upload accepted for one file.
pub const MAX_IMAGE_BYTES: u64 = 1 << 40;
/// Longest kernel command line accepted (Linux allows 2048 on x86).
pub const MAX_CMDLINE_LEN: usize = 2048;

/// The template and ISO files.
#[derive(Debug, Clone)]
pub struct ImageLibrary {
    root: PathBuf,
}

/// A template's files on disk.
#[derive(Debug, Clone)]
pub struct TemplateFiles {
    /// The base disk image.
    pub disk: PathBuf,
    /// The kernel, for direct boot.
    pub kernel: Option<PathBuf>,
    /// The initrd.
    pub initrd: Option<PathBuf>,
}

impl ImageLibrary {
    /// The library in `data_dir`, as it is: for a reader (a test's driver) beside the plane
    /// that opened it.
    pub fn at(data_dir: &Path) -> Self {
        Self {
            root: data_dir.to_owned(),
        }
    }

    /// Opens the library in `data_dir`, creating its directories and sweeping away uploads
    /// a crash interrupted.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let library = Self {
            root: data_dir.to_owned(),
        };
        for dir in ["templates", "isos", "incoming"] {
            std::fs::create_dir_all(data_dir.join(dir))?;
        }
        for leftover in std::fs::read_dir(library.incoming())? {
            let path = leftover?.path();
            tracing::info!(path = %path.display(), "removing an interrupted upload");
            std::fs::remove_dir_all(&path)?;
        }
        Ok(library)
    }

    fn incoming(&self) -> PathBuf {
        self.root.join("incoming")
    }

    pub fn template_dir(&self, id: TemplateId) -> PathBuf {
        self.root.join("templates").join(id.to_string())
    }

    /// Where template `t`'s files are.
    pub fn template_files(&self, t: &TemplateRecord) -> TemplateFiles {
        let dir = self.template_dir(t.id);
        TemplateFiles {
            disk: dir.join("disk"),
            kernel: t.kernel_sha256.as_ref().map(|_| dir.join("vmlinuz")),
            initrd: t.initrd_sha256.as_ref().map(|_| dir.join("initrd")),
        }
    }

    /// Where ISO `id` is.
    pub fn iso_path(&self, id: IsoId) -> PathBuf {
        self.root.join("isos").join(format!("{id}.iso"))
    }

    /// A fresh staging directory for an upload.
    pub fn stage(&self) -> Result<Staging, ApiError> {
        let dir = self.incoming().join(uuid::Uuid::new_v4().to_string());
        std::fs::create_dir(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(Staging {
            dir,
            committed: false,
        })
    }
}

/// The built-in node shares the plane's disk: its VMs boot from the library's own files.
#[async_trait]
impl ImageFiles for ImageLibrary {
    async fn path(
        &self,
        file: ImageFile,
        _progress: &dyn Progress,
    ) -> Result<PathBuf, DriverError> {
        let path = match file {
            ImageFile::TemplateDisk(id) => self.template_dir(id).join("disk"),
            ImageFile::TemplateKernel(id) => self.template_dir(id).join("vmlinuz"),
            ImageFile::TemplateInitrd(id) => self.template_dir(id).join("initrd"),
            ImageFile::Iso(id) => self.iso_path(id),
        };
        if path.is_file() {
            return Ok(path);
        }
        let role = match file {
            ImageFile::TemplateDisk(_) => ", the backing image of its VMs' disks",
            _ => "",
        };
        Err(DriverError::BadImage(format!(
            "the plane keeps no {file}{role} (it was deleted, or never imported)"
        )))
    }
}

/// A file received into staging.
#[derive(Debug, Clone)]
pub struct StagedFile {
    /// Where it is now.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Hex SHA-256 of its contents.
    pub sha256: String,
}

/// An upload in progress. Dropping it uncommitted removes everything it received.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    /// Streams `stream` into the staging file `name`, hashing it, and refusing more than
    /// [`MAX_IMAGE_BYTES`]. `field` names the upload part in errors.
    pub async fn receive<S, E>(
        &mut self,
        field: &'static str,
        name: &str,
        mut stream: S,
    ) -> Result<StagedFile, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        let path = self.dir.join(name);
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::malformed(Some(field), format!("{field}: the upload broke off: {e}"))
            })?;
            size += chunk.len() as u64;
            if size > MAX_IMAGE_BYTES {
                return Err(ApiError::invalid(
                    field,
                    format!("is larger than {MAX_IMAGE_BYTES} bytes"),
                ));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| io_error(&path, e))?;
        }
        file.flush().await.map_err(|e| io_error(&path, e))?;
        file.get_ref()
            .sync_all()
            .await
            .map_err(|e| io_error(&path, e))?;
        if size == 0 {
            return Err(ApiError::invalid(field, "is empty"));
        }
        Ok(StagedFile {
            path,
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Moves the staging directory to `dest`, keeping its contents.
    pub fn commit(mut self, dest: &Path) -> Result<(), ApiError> {
        std::fs::rename(&self.dir, dest).map_err(|e| io_error(dest, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A filesystem failure, with "disk full" reported as something an admin can act on.
pub fn io_error(path: &Path, error: std::io::Error) -> ApiError {
    if error.kind() == std::io::ErrorKind::StorageFull {
        return ApiError::Unavailable(format!("not enough space in {}", path.display()));
    }
    ApiError::internal(anyhow::Error::new(error).context(format!("writing {}", path.display())))
}
