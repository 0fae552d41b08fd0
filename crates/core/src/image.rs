//! Images by identity: the files of templates and ISOs the plane keeps, and how a node's
//! driver gets them.
//!
//! Drivers never see the plane's paths. A [`VmDefinition`](crate::driver::VmDefinition)
//! names its images by id, and the driver asks its [`ImageFiles`] for a file on its own host:
//! - a node that shares the plane's disk (the built-in QEMU node) gets the plane's own files;
//! - a node that does not (an agent's host) gets a cached copy, fetched once from an
//!   [`ImageSource`] and checked against the SHA-256 the plane recorded at import.

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;

use crate::driver::{DriverError, Progress};
use crate::ids::{IsoId, TemplateId};

/// One file of an image the plane keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageFile {
    /// A template's base disk.
    TemplateDisk(TemplateId),
    /// A template's kernel, for direct boot.
    TemplateKernel(TemplateId),
    /// A template's initrd.
    TemplateInitrd(TemplateId),
    /// An installer ISO.
    Iso(IsoId),
}

impl fmt::Display for ImageFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageFile::TemplateDisk(id) => write!(f, "template {id}'s disk"),
            ImageFile::TemplateKernel(id) => write!(f, "template {id}'s kernel"),
            ImageFile::TemplateInitrd(id) => write!(f, "template {id}'s initrd"),
            ImageFile::Iso(id) => write!(f, "ISO {id}"),
        }
    }
}

/// Where a driver gets the files of the plane's images, on its own host.
#[async_trait]
pub trait ImageFiles: Send + Sync + fmt::Debug {
    /// A file on this host holding `file`'s bytes, fetched and checked first if this host
    /// has no copy yet (`progress` hears about the transfer). A file the plane does not keep
    /// is a [`DriverError::BadImage`].
    async fn path(&self, file: ImageFile, progress: &dyn Progress) -> Result<PathBuf, DriverError>;
}

/// The bytes of an image file, as a source serves them.
pub struct ImageBytes {
    /// The hex SHA-256 the plane recorded when it imported the file.
    pub sha256: String,
    /// Its length, if the source knows it.
    pub length: Option<u64>,
    /// The bytes.
    pub body: Pin<Box<dyn futures_core::Stream<Item = Result<Bytes, DriverError>> + Send>>,
}

impl fmt::Debug for ImageBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageBytes")
            .field("sha256", &self.sha256)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

/// Where the bytes of the plane's images come from, for hosts that keep copies.
#[async_trait]
pub trait ImageSource: Send + Sync + fmt::Debug {
    /// Opens `file`'s bytes. A file the plane does not keep is a [`DriverError::BadImage`].
    async fn open(&self, file: ImageFile) -> Result<ImageBytes, DriverError>;
}
