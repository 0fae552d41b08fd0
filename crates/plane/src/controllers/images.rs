//! Templates and ISOs: listing, uploading (multipart, streamed to disk) and removing.

use axum::Json;
use axum::extract::multipart::Field;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use porthole_api::{ApproveImageRequest, ErrorBody, Iso, Template};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::library::{StagedFile, Staging};
use crate::services::caller::Caller;
use crate::services::images::{self, IsoUpload, TemplateUpload};

/// Longest text field accepted in an upload form.
const MAX_TEXT_FIELD: usize = 4096;

/// The templates the caller may use: approved ones, or all for admins.
#[utoipa::path(get, path = "/api/v1/templates", tag = "images", security(("bearer" = [])),
    responses((status = 200, body = Vec<Template>)))]
pub async fn list_templates(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Template>>, ApiError> {
    images::templates(&app, &caller).await.map(Json)
}

/// Approves a template for members, or withdraws it (admins).
#[utoipa::path(patch, path = "/api/v1/templates/{name}", tag = "images",
    security(("bearer" = [])), params(("name" = String, Path, description = "The template's name")),
    request_body = ApproveImageRequest,
    responses((status = 200, body = Template), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn approve_template(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<ApproveImageRequest>,
) -> Result<Json<Template>, ApiError> {
    images::approve_template(&app, &caller, &name, request.approved)
        .await
        .map(Json)
}

/// Approves an ISO for members, or withdraws it (admins).
#[utoipa::path(patch, path = "/api/v1/isos/{name}", tag = "images",
    security(("bearer" = [])), params(("name" = String, Path, description = "The ISO's name")),
    request_body = ApproveImageRequest,
    responses((status = 200, body = Iso), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn approve_iso(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<ApproveImageRequest>,
) -> Result<Json<Iso>, ApiError> {
    images::approve_iso(&app, &caller, &name, request.approved)
        .await
        .map(Json)
}

/// Imports a template (admins only). A `multipart/form-data` body with the parts `name`,
/// `disk` (qcow2 or raw), and optionally `kernel`, `initrd` and `cmdline` for direct boot.
/// Send `name` first: a taken name is refused before the image is received.
#[utoipa::path(post, path = "/api/v1/templates", tag = "images", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", description = "name, disk, kernel?, initrd?, cmdline?"),
    responses((status = 201, body = Template), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_template(
    State(app): State<AppState>,
    caller: Caller,
    mut form: Multipart,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    let staging = images::begin_upload(&app, &caller)?;
    let received =
        refuse_after_draining(receive_template(&app, staging, &mut form).await, form).await;
    let created = images::import_template(&app, &caller, received).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Reads the template's parts into `staging`; the name is checked as soon as it arrives.
async fn receive_template(
    app: &AppState,
    staging: Staging,
    form: &mut Multipart,
) -> Result<TemplateUpload, ApiError> {
    let mut upload = TemplateUpload {
        name: None,
        cmdline: None,
        staging,
        disk: None,
        kernel: None,
        initrd: None,
    };
    while let Some(field) = next_field(form).await? {
        match field.name().unwrap_or_default() {
            "name" => {
                let name = text(field, "name").await?;
                images::check_template_name(app, &name).await?;
                upload.name = Some(name);
            }
            "cmdline" => upload.cmdline = Some(text(field, "cmdline").await?),
            "disk" => upload.disk = Some(file(&mut upload, field, "disk", "disk").await?),
            "kernel" => upload.kernel = Some(file(&mut upload, field, "kernel", "vmlinuz").await?),
            "initrd" => upload.initrd = Some(file(&mut upload, field, "initrd", "initrd").await?),
            other => return Err(unknown_part(other, "name, disk, kernel, initrd, cmdline")),
        }
    }
    Ok(upload)
}

/// Most of a refused upload read (and dropped) before answering, so the client, still
/// sending, gets to read the refusal instead of a broken connection.
const MAX_DRAIN: usize = 256 * 1024 * 1024;

/// Passes `result` on; if it is a refusal, first reads what is left of the upload (up to
/// [`MAX_DRAIN`] bytes, for at most 30 s).
async fn refuse_after_draining<T>(
    result: Result<T, ApiError>,
    mut form: Multipart,
) -> Result<T, ApiError> {
    if result.is_err() {
        let drain = async {
            let mut drained = 0;
            while let Ok(Some(mut field)) = form.next_field().await {
                while let Ok(Some(chunk)) = field.chunk().await {
                    drained += chunk.len();
                    if drained > MAX_DRAIN {
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), drain).await;
    }
    result
}

async fn file(
    upload: &mut TemplateUpload,
    field: Field<'_>,
    name: &'static str,
    stored_as: &str,
) -> Result<StagedFile, ApiError> {
    upload.staging.receive(name, stored_as, field).await
}

/// Removes a template no VM uses (admins only).
#[utoipa::path(delete, path = "/api/v1/templates/{name}", tag = "images",
    security(("bearer" = [])), params(("name" = String, Path, description = "The template's name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_template(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    images::delete_template(&app, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The ISOs the caller may boot: approved ones, or all for admins.
#[utoipa::path(get, path = "/api/v1/isos", tag = "images", security(("bearer" = [])),
    responses((status = 200, body = Vec<Iso>)))]
pub async fn list_isos(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Iso>>, ApiError> {
    images::isos(&app, &caller).await.map(Json)
}

/// Imports an installer ISO (admins only): a `multipart/form-data` body with the parts
/// `name` (first) and `iso`.
#[utoipa::path(post, path = "/api/v1/isos", tag = "images", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", description = "name, iso"),
    responses((status = 201, body = Iso), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_iso(
    State(app): State<AppState>,
    caller: Caller,
    mut form: Multipart,
) -> Result<(StatusCode, Json<Iso>), ApiError> {
    let staging = images::begin_upload(&app, &caller)?;
    let received = refuse_after_draining(receive_iso(&app, staging, &mut form).await, form).await;
    let created = images::import_iso(&app, &caller, received).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Reads the ISO's parts into `staging`; the name is checked as soon as it arrives.
async fn receive_iso(
    app: &AppState,
    mut staging: Staging,
    form: &mut Multipart,
) -> Result<IsoUpload, ApiError> {
    let (mut name, mut iso) = (None, None);
    while let Some(field) = next_field(form).await? {
        match field.name().unwrap_or_default() {
            "name" => {
                let text = text(field, "name").await?;
                images::check_iso_name(app, &text).await?;
                name = Some(text);
            }
            "iso" => iso = Some(staging.receive("iso", "image.iso", field).await?),
            other => return Err(unknown_part(other, "name, iso")),
        }
    }
    Ok(IsoUpload { name, staging, iso })
}

/// Removes an ISO no VM uses (admins only).
#[utoipa::path(delete, path = "/api/v1/isos/{name}", tag = "images", security(("bearer" = [])),
    params(("name" = String, Path, description = "The ISO's name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_iso(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    images::delete_iso(&app, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn next_field<'a>(form: &'a mut Multipart) -> Result<Option<Field<'a>>, ApiError> {
    form.next_field()
        .await
        .map_err(|e| ApiError::malformed(None, format!("malformed multipart body: {e}")))
}

async fn text(mut field: Field<'_>, name: &'static str) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::malformed(Some(name), format!("{name}: {e}")))?
    {
        if bytes.len() + chunk.len() > MAX_TEXT_FIELD {
            return Err(ApiError::invalid(
                name,
                format!("is longer than {MAX_TEXT_FIELD} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| ApiError::invalid(name, "is not UTF-8 text"))
}

fn unknown_part(name: &str, known: &str) -> ApiError {
    ApiError::malformed(
        Some(name),
        format!("{name}: unknown form part; expected {known}"),
    )
}
