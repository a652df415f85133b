//! The built-in web client: the pages behind `/` and `join_link`, their assets (embedded in the
//! binary at compile time), and the QR code of a join link as a module matrix.
//!
//! Pages are small HTML templates with no inline script or style; the settings the page needs
//! (tile URL, location TTL) travel in `<meta>` tags. Assets live under `/assets/{version}/…`,
//! where the version is a hash of every asset: a page always names the assets it was built with,
//! so they can be cached for good.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use qrcode::{Color, EcLevel, QrCode, Version};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::{session_id, sessions, AppState};
use crate::config::Settings;

/// One embedded file under `/assets/{version}/`.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Everything the pages load; nothing comes from anywhere else.
static ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/api.js", JS),
    asset!("js/channel.js", JS),
    asset!("js/dashboard.js", JS),
    asset!("js/home.js", JS),
    asset!("js/join.js", JS),
    asset!("js/map.js", JS),
    asset!("js/qr.js", JS),
    asset!("js/ui.js", JS),
];

/// The HTML templates.
pub(crate) const HOME_HTML: &str = include_str!("../../web/index.html");
pub(crate) const JOIN_HTML: &str = include_str!("../../web/join.html");
pub(crate) const DASHBOARD_HTML: &str = include_str!("../../web/dashboard.html");

/// FNV-1a, 64 bits: stable across builds and platforms, enough for ETags and cache busting.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// A hash of every asset and template: changes whenever any of them does.
pub fn assets_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut parts: Vec<&[u8]> = ASSETS.iter().flat_map(|a| [a.path.as_bytes(), a.body]).collect();
        parts.extend([HOME_HTML.as_bytes(), JOIN_HTML.as_bytes(), DASHBOARD_HTML.as_bytes()]);
        format!("{:012x}", fnv1a(&parts) & 0xffff_ffff_ffff)
    })
}

fn etag(body: &[u8]) -> String {
    format!("\"{:016x}\"", fnv1a(&[body]))
}

/// Whether the request's `If-None-Match` names this ETag (or `*`).
fn not_modified(req: &HttpRequest, tag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == tag || v == "*")
}

/// Escapes text for an HTML attribute value or element content.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The Content-Security-Policy of every page: only this server's own scripts and styles, images
/// from here and from the tile server, sockets to here.
pub fn content_security_policy(settings: &Settings) -> String {
    let tiles = settings.tile_url.as_ref().map(|t| format!(" {}", t.csp_source())).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:{tiles}; \
         connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
         object-src 'none'"
    )
}

/// Fills a page template with the asset path and the settings the page reads from `<meta>`.
fn render(template: &str, settings: &Settings) -> String {
    let tile_url = settings.tile_url.as_ref().map(|t| t.as_str()).unwrap_or("none");
    template
        .replace("{{assets}}", &format!("/assets/{}", assets_version()))
        .replace("{{tile_url}}", &html_escape(tile_url))
        .replace("{{location_ttl}}", &settings.limits.location_ttl.as_secs().to_string())
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
}

/// An HTML page with the security headers; revalidated on every load (ETag).
pub(crate) fn page(req: &HttpRequest, template: &str, settings: &Settings) -> HttpResponse {
    let body = render(template, settings);
    let tag = etag(body.as_bytes());
    let fresh = not_modified(req, &tag);
    let mut res = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::CONTENT_SECURITY_POLICY, content_security_policy(settings)))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header(("permissions-policy", "geolocation=(self), camera=(), microphone=()"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, tag));
    if fresh {
        return res.finish();
    }
    res.content_type("text/html; charset=utf-8").body(body)
}

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
    let asset = ASSETS.iter().find(|a| a.path == file).ok_or(ApiError::NotFound("Not Found"))?;
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
    let session = sessions::load(&state, id, Utc::now()).await?;
    let text = format!("{}/join/{}", state.settings.join_base_url, session.id);
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
    fn every_asset_is_referenced_and_typed() {
        assert!(ASSETS.iter().all(|a| !a.body.is_empty()));
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            assert_eq!(a.content_type, JS, "{}", a.path);
        }
        // The templates name assets through the version placeholder only.
        for template in [HOME_HTML, JOIN_HTML, DASHBOARD_HTML] {
            assert!(template.contains("{{assets}}/js/"));
            assert!(!template.contains("<script>") && !template.contains(" style="));
            assert!(!template.contains("<style"));
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(html_escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

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
