//! Templates and ISOs as users ask for them: imports (checked, then committed into the
//! [`ImageLibrary`](crate::library::ImageLibrary)), approval, listing and deletion, and the
//! demo template.

use std::path::Path;

use porthole_api::{Iso, Template};
use porthole_core::spec::{SpecError, VmName, gib_to_hold};
use porthole_core::{IsoId, TemplateId};
use porthole_qemu::image::{self, ImageError};
use porthole_store::images::{IsoRecord, TemplateRecord};

use crate::app::App;
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::library::{MAX_CMDLINE_LEN, StagedFile, Staging, io_error};
use crate::services::agents;
use crate::services::audit::{self, Target};
use crate::services::caller::Caller;

/// A template upload, once its parts are staged.
#[derive(Debug)]
pub struct TemplateUpload {
    /// The template's name.
    pub name: Option<String>,
    /// The kernel command line.
    pub cmdline: Option<String>,
    /// The received files.
    pub staging: Staging,
    /// The base disk.
    pub disk: Option<StagedFile>,
    /// The kernel.
    pub kernel: Option<StagedFile>,
    /// The initrd.
    pub initrd: Option<StagedFile>,
}

/// An ISO upload, once its parts are staged.
#[derive(Debug)]
pub struct IsoUpload {
    /// The ISO's name.
    pub name: Option<String>,
    /// The received files.
    pub staging: Staging,
    /// The image.
    pub iso: Option<StagedFile>,
}

/// The templates the caller may use: approved ones, or all for admins.
pub async fn templates(app: &App, caller: &Caller) -> Result<Vec<Template>, ApiError> {
    Ok(app
        .store
        .templates()
        .await?
        .iter()
        .filter(|t| t.approved || caller.is_admin())
        .map(template_to_wire)
        .collect())
}

/// The ISOs the caller may boot: approved ones, or all for admins.
pub async fn isos(app: &App, caller: &Caller) -> Result<Vec<Iso>, ApiError> {
    Ok(app
        .store
        .isos()
        .await?
        .iter()
        .filter(|iso| iso.approved || caller.is_admin())
        .map(iso_to_wire)
        .collect())
}

/// Every template and ISO, approved or not (admins).
pub async fn library(app: &App, caller: &Caller) -> Result<(Vec<Template>, Vec<Iso>), ApiError> {
    caller.require_admin()?;
    Ok((templates(app, caller).await?, isos(app, caller).await?))
}

/// A fresh staging directory for an admin's upload.
pub fn begin_upload(app: &App, caller: &Caller) -> Result<Staging, ApiError> {
    caller.require_admin()?;
    app.images.stage()
}

/// Checks and commits a received template upload, and records the import (or why it
/// failed, `received` included) in the audit log.
pub async fn import_template(
    app: &App,
    caller: &Caller,
    received: Result<TemplateUpload, ApiError>,
) -> Result<Template, ApiError> {
    let result = match received {
        Ok(upload) => finish_template_import(app, upload).await,
        Err(e) => Err(e),
    };
    let target = result
        .as_ref()
        .ok()
        .map(|t| Target::new("template", t.id, &t.name));
    audit::recorded(app, caller.into(), "template.import", target, None, result).await
}

/// Checks and commits a received ISO upload, and records the import in the audit log.
pub async fn import_iso(
    app: &App,
    caller: &Caller,
    received: Result<IsoUpload, ApiError>,
) -> Result<Iso, ApiError> {
    let result = match received {
        Ok(upload) => finish_iso_import(app, upload).await,
        Err(e) => Err(e),
    };
    let target = result
        .as_ref()
        .ok()
        .map(|i| Target::new("iso", i.id, &i.name));
    audit::recorded(app, caller.into(), "iso.import", target, None, result).await
}

/// Removes a template no VM uses, with its files here and on every agent (admins).
pub async fn delete_template(app: &App, caller: &Caller, name: &str) -> Result<(), ApiError> {
    caller.require_admin()?;
    let result = delete_template_files(app, name).await;
    let target = Target::named("template", name.to_owned());
    audit::recorded(
        app,
        caller.into(),
        "template.delete",
        Some(target),
        None,
        result,
    )
    .await
}

/// Removes an ISO no VM uses, here and on every agent (admins).
pub async fn delete_iso(app: &App, caller: &Caller, name: &str) -> Result<(), ApiError> {
    caller.require_admin()?;
    let result = delete_iso_file(app, name).await;
    let target = Target::named("iso", name.to_owned());
    audit::recorded(app, caller.into(), "iso.delete", Some(target), None, result).await
}

/// Checks an image name: the same rules as a VM name (a DNS label).
pub fn validate_image_name(name: &str) -> Result<(), ApiError> {
    VmName::parse(name)
        .map(drop)
        .map_err(|e| ApiError::Invalid(SpecError::new("name", e.problem)))
}

/// Fails early if a template called `name` exists, before a large upload is received.
pub async fn check_template_name(app: &App, name: &str) -> Result<(), ApiError> {
    validate_image_name(name)?;
    if app.store.template_by_name(name).await?.is_some() {
        return Err(ApiError::conflict(
            Some("name"),
            format!("name: a template called {name:?} exists already"),
        ));
    }
    Ok(())
}

/// Fails early if an ISO called `name` exists.
pub async fn check_iso_name(app: &App, name: &str) -> Result<(), ApiError> {
    validate_image_name(name)?;
    if app.store.iso_by_name(name).await?.is_some() {
        return Err(ApiError::conflict(
            Some("name"),
            format!("name: an ISO called {name:?} exists already"),
        ));
    }
    Ok(())
}

/// Verifies a staged template and makes it available.
async fn finish_template_import(app: &App, upload: TemplateUpload) -> Result<Template, ApiError> {
    let name = upload
        .name
        .ok_or_else(|| ApiError::invalid("name", "is missing"))?;
    validate_image_name(&name)?;
    let disk = upload.disk.ok_or_else(|| {
        ApiError::invalid(
            "disk",
            "is missing: attach the base image as the `disk` part",
        )
    })?;
    let info = image::inspect_untrusted(&disk.path)
        .await
        .map_err(|e| match e {
            ImageError::Rejected(why) => ApiError::invalid("disk", why),
            ImageError::Failed { message, .. } => {
                ApiError::invalid("disk", format!("is not a readable disk image: {message}"))
            }
            other => ApiError::internal(other),
        })?;
    if let Some(kernel) = &upload.kernel {
        if !is_bzimage(&kernel.path)? {
            return Err(ApiError::invalid(
                "kernel",
                "is not an x86 Linux kernel (bzImage)",
            ));
        }
    } else if upload.initrd.is_some() || upload.cmdline.is_some() {
        let field = if upload.initrd.is_some() {
            "initrd"
        } else {
            "cmdline"
        };
        return Err(ApiError::invalid(
            field,
            "needs a kernel: attach one as the `kernel` part",
        ));
    }
    if let Some(cmdline) = &upload.cmdline
        && (cmdline.len() > MAX_CMDLINE_LEN || cmdline.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "cmdline",
            format!("must be one line of at most {MAX_CMDLINE_LEN} characters"),
        ));
    }
    let record = TemplateRecord {
        id: TemplateId::random(),
        name,
        disk_format: info.format,
        virtual_size: info.virtual_size,
        file_size: disk.size,
        sha256: disk.sha256,
        kernel_sha256: upload.kernel.map(|k| k.sha256),
        initrd_sha256: upload.initrd.map(|i| i.sha256),
        cmdline: upload.cmdline,
        created_at: app.clock.now_millis(),
        approved: false,
        on_node: None,
    };
    let dir = app.images.template_dir(record.id);
    upload.staging.commit(&dir)?;
    if let Err(e) = app.store.insert_template(&record).await {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e.into());
    }
    tracing::info!(template = %record.name, size = record.file_size, "template imported");
    Ok(template_to_wire(&record))
}

/// Verifies a staged ISO and makes it available.
async fn finish_iso_import(app: &App, upload: IsoUpload) -> Result<Iso, ApiError> {
    let IsoUpload { name, staging, iso } = upload;
    let name = name.ok_or_else(|| ApiError::invalid("name", "is missing"))?;
    validate_image_name(&name)?;
    let iso = iso.ok_or_else(|| {
        ApiError::invalid("iso", "is missing: attach the image as the `iso` part")
    })?;
    if !is_iso9660(&iso.path)? {
        return Err(ApiError::invalid("iso", "is not an ISO 9660 image"));
    }
    let record = IsoRecord {
        id: IsoId::random(),
        name,
        file_size: iso.size,
        sha256: iso.sha256,
        created_at: app.clock.now_millis(),
        approved: false,
    };
    let dest = app.images.iso_path(record.id);
    std::fs::rename(&iso.path, &dest).map_err(|e| io_error(&dest, e))?;
    drop(staging);
    if let Err(e) = app.store.insert_iso(&record).await {
        let _ = std::fs::remove_file(&dest);
        return Err(e.into());
    }
    tracing::info!(iso = %record.name, size = record.file_size, "ISO imported");
    Ok(iso_to_wire(&record))
}

/// Removes a template no VM uses.
async fn delete_template_files(app: &App, name: &str) -> Result<(), ApiError> {
    let template = app
        .store
        .template_by_name(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no template named {name:?}")))?;
    app.store.delete_template(template.id).await?;
    if template.on_node.is_some() {
        // The node keeps it; porthole only forgets the link.
        return Ok(());
    }
    let dir = app.images.template_dir(template.id);
    std::fs::remove_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    agents::evict_everywhere(app, "templates", &template.id.to_string()).await;
    Ok(())
}

/// Removes an ISO no VM uses.
async fn delete_iso_file(app: &App, name: &str) -> Result<(), ApiError> {
    let iso = app
        .store
        .iso_by_name(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no ISO named {name:?}")))?;
    app.store.delete_iso(iso.id).await?;
    let path = app.images.iso_path(iso.id);
    std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
    agents::evict_everywhere(app, "isos", &iso.id.to_string()).await;
    Ok(())
}

/// Imports the `demo` template from a guest built by `guest/build.sh`, unless it exists.
pub async fn ensure_demo_template(app: &App, guest: &Path) -> Result<(), ApiError> {
    const NAME: &str = "demo";
    if app.store.template_by_name(NAME).await?.is_some() {
        return Ok(());
    }
    let missing = ["disk.qcow2", "vmlinuz", "initrd.img", "cmdline"]
        .into_iter()
        .find(|f| !guest.join(f).is_file());
    if let Some(missing) = missing {
        return Err(ApiError::Unavailable(format!(
            "the demo guest is not built: {} is missing; run guest/build.sh {}",
            guest.join(missing).display(),
            guest.display()
        )));
    }
    let cmdline = std::fs::read_to_string(guest.join("cmdline"))
        .map_err(|e| io_error(&guest.join("cmdline"), e))?
        .trim()
        .to_owned();
    let mut staging = app.images.stage()?;
    let mut stage = async |field: &'static str, name: &str, source: &str| {
        let path = guest.join(source);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        staging
            .receive(field, name, tokio_util::io::ReaderStream::new(file))
            .await
    };
    let disk = stage("disk", "disk", "disk.qcow2").await?;
    let kernel = stage("kernel", "vmlinuz", "vmlinuz").await?;
    let initrd = stage("initrd", "initrd", "initrd.img").await?;
    let upload = TemplateUpload {
        name: Some(NAME.into()),
        cmdline: Some(cmdline),
        staging,
        disk: Some(disk),
        kernel: Some(kernel),
        initrd: Some(initrd),
    };
    let template = finish_template_import(app, upload).await?;
    // The demo exists for everyone to try.
    app.store
        .set_template_approved(TemplateId::from(template.id), true)
        .await?;
    Ok(())
}

/// Lets members use a template, or stops them (admins).
pub async fn approve_template(
    app: &App,
    caller: &Caller,
    name: &str,
    approved: bool,
) -> Result<Template, ApiError> {
    caller.require_admin()?;
    let template = app
        .store
        .template_by_name(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no template called {name:?}")))?;
    let result = app.store.set_template_approved(template.id, approved).await;
    let action = if approved {
        "template.approve"
    } else {
        "template.unapprove"
    };
    audit::recorded(
        app,
        caller.into(),
        action,
        Some(Target::new("template", template.id, name)),
        None,
        result,
    )
    .await?;
    Ok(template_to_wire(&TemplateRecord {
        approved,
        ..template
    }))
}

/// Lets members boot an ISO, or stops them (admins).
pub async fn approve_iso(
    app: &App,
    caller: &Caller,
    name: &str,
    approved: bool,
) -> Result<Iso, ApiError> {
    caller.require_admin()?;
    let iso = app
        .store
        .iso_by_name(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no ISO called {name:?}")))?;
    let result = app.store.set_iso_approved(iso.id, approved).await;
    let action = if approved {
        "iso.approve"
    } else {
        "iso.unapprove"
    };
    audit::recorded(
        app,
        caller.into(),
        action,
        Some(Target::new("iso", iso.id, name)),
        None,
        result,
    )
    .await?;
    Ok(iso_to_wire(&IsoRecord { approved, ..iso }))
}

/// A template as the API shows it.
pub fn template_to_wire(t: &TemplateRecord) -> Template {
    Template {
        id: t.id.as_uuid(),
        name: t.name.clone(),
        format: t.disk_format,
        virtual_size: t.virtual_size,
        min_disk_gib: gib_to_hold(t.virtual_size),
        sha256: t.sha256.clone(),
        boot: if t.on_node.is_some() {
            "node"
        } else if t.kernel_sha256.is_some() {
            "kernel"
        } else {
            "disk"
        }
        .into(),
        created_at: from_millis(t.created_at),
        approved: t.approved,
        node: t.on_node.as_ref().map(|n| n.node.clone()),
    }
}

/// An ISO as the API shows it.
pub fn iso_to_wire(iso: &IsoRecord) -> Iso {
    Iso {
        id: iso.id.as_uuid(),
        name: iso.name.clone(),
        size: iso.file_size,
        sha256: iso.sha256.clone(),
        created_at: from_millis(iso.created_at),
        approved: iso.approved,
    }
}

/// Whether `path` holds `magic` at `offset`.
fn has_magic(path: &Path, offset: u64, magic: &[u8]) -> Result<bool, ApiError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut found = vec![0u8; magic.len()];
    let read = file
        .seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut found));
    Ok(read.is_ok() && found == magic)
}

/// An x86 Linux boot image carries "HdrS" at offset 0x202.
fn is_bzimage(path: &Path) -> Result<bool, ApiError> {
    has_magic(path, 0x202, b"HdrS")
}

/// An ISO 9660 image has its primary volume descriptor, marked "CD001", at sector 16.
fn is_iso9660(path: &Path) -> Result<bool, ApiError> {
    has_magic(path, 0x8001, b"CD001")
}
