//! The plane as an [`ImageSource`]: an agent's host fetches the files of templates and ISOs
//! over mutual TLS (`/agent/v1/templates/ID/PART`, `/agent/v1/isos/ID`), with the SHA-256
//! the plane recorded at import in a header, and keeps them in an
//! [`ImageCache`](porthole_image_cache::ImageCache).

use async_trait::async_trait;
use futures::StreamExt;
use porthole_core::driver::DriverError;
use porthole_core::image::{ImageBytes, ImageFile, ImageSource};

use crate::enrol::PlaneLink;
use crate::wire::SHA256_HEADER;

/// Where file `file` is on the plane's agent listener.
fn url_path(file: ImageFile) -> String {
    match file {
        ImageFile::TemplateDisk(id) => format!("/agent/v1/templates/{id}/disk"),
        ImageFile::TemplateKernel(id) => format!("/agent/v1/templates/{id}/kernel"),
        ImageFile::TemplateInitrd(id) => format!("/agent/v1/templates/{id}/initrd"),
        ImageFile::Iso(id) => format!("/agent/v1/isos/{id}"),
    }
}

#[async_trait]
impl ImageSource for PlaneLink {
    async fn open(&self, file: ImageFile) -> Result<ImageBytes, DriverError> {
        let unreachable = move |e: reqwest::Error| {
            DriverError::Unreachable(format!(
                "fetching {file} from the plane: {}",
                porthole_core::error_chain(&e)
            ))
        };
        let response = self
            .get(&url_path(file))
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(DriverError::BadImage(format!(
                "the plane refused {file} ({status}): {body}"
            )));
        }
        let sha256 = response
            .headers()
            .get(SHA256_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                DriverError::BadImage(format!("the plane sent {file} without its SHA-256"))
            })?;
        Ok(ImageBytes {
            sha256,
            length: response.content_length(),
            body: Box::pin(
                response
                    .bytes_stream()
                    .map(move |chunk| chunk.map_err(unreachable)),
            ),
        })
    }
}
