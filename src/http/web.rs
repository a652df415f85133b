//! The built-in web client's routes: the pages behind `/` and `join_link`, their assets, and the
//! QR code of a join link as a module matrix.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use qrcode::{Color, EcLevel, QrCode, Version};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::pages::{self, assets_version, etag, not_modified, page, HOME_HTML, JOIN_HTML};
use super::{session_id, AppState};

/// `GET /`: start a session, share its link, and manage it.
pub async fn home(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(&req, HOME_HTML, &state.settings)
}

/// `GET /join/{id}`: the page a `join_link` opens. Whatever the id, the page asks the API about
/// the session and explains what it finds.
pub async fn join(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(&req, JOIN_HTML, &state.settings)
}

/// `GET /assets/{version}/{path}`: an embedded asset. Under the current version it never
/// changes, so it is cached for a year; under another (a page from an older or newer replica)
/// it is revalidated instead.
pub async fn asset(req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (version, file) = path.into_inner();
    let asset = pages::asset(&file).ok_or(ApiError::NotFound("Not Found"))?;
    let cache = if version == assets_version() { "public, max-age=31536000, immutable" } else { "no-cache" };
    let tag = etag(asset.body);
    let fresh = not_modified(&req, &tag);
    let mut res = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, tag))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        return Ok(res.finish());
    }
    res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)));
    Ok(res.body(asset.body))
}

/// `GET /api/sessions/{id}/qr` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct QrMatrix {
    /// Modules per side (`17 + 4 × version`).
    pub size: usize,
    /// QR version, 1..=40.
    pub version: i16,
    /// Error correction level (`M`).
    pub ec_level: &'static str,
    /// The text encoded: the session's `join_link`.
    pub text: String,
    /// `size × size` characters, row by row from the top left: `1` dark, `0` light.
    pub modules: String,
}

/// The QR code of a session's join link, as a matrix for the page to draw.
#[utoipa::path(
    get, path = "/api/sessions/{id}/qr", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The QR code of the join link", body = QrMatrix),
        (status = 404, description = "Unknown or purged session", body = super::openapi::ErrorBody),
        (status = 503, description = "Database unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn qr(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let session = state.sessions.load(id, Utc::now()).await?;
    let text = state.settings.join_link(session.id);
    let matrix = qr_matrix(&text)?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "private, max-age=3600")).json(matrix))
}

/// Encodes `text` at error correction level M.
pub fn qr_matrix(text: &str) -> Result<QrMatrix, ApiError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|e| {
        log::error!("cannot encode a QR code: {e}");
        ApiError::Internal
    })?;
    let version = match code.version() {
        Version::Normal(v) | Version::Micro(v) => v,
    };
    let modules = code.to_colors().iter().map(|c| if *c == Color::Dark { '1' } else { '0' }).collect();
    Ok(QrMatrix { size: code.width(), version, ec_level: "M", text: text.to_owned(), modules })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_sizes_match_versions() {
        let m = qr_matrix("http://localhost:4000/join/0b0e5b3a-1d6e-4a55-9a57-2f5a3c7e9d10")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.size, 17 + 4 * usize::try_from(m.version).unwrap_or_default());
        assert_eq!(m.modules.len(), m.size * m.size);
        // The three finder patterns: a dark 7×7 ring at the top left corner.
        assert!(m.modules[..7].bytes().all(|b| b == b'1'));
    }
}
