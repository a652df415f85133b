//! What the pages are made of: the HTML templates and assets embedded in the binary at compile
//! time, their version hash, and one page renderer with the security headers. The route modules
//! (`web`, `dashboard`) serve them.
//!
//! Pages are small HTML templates with no inline script or style; the settings the page needs
//! (tile URL, location TTL) travel in `<meta>` tags. Assets live under `/assets/{version}/…`,
//! where the version is a hash of every asset: a page always names the assets it was built with,
//! so they can be cached for good.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use crate::config::Settings;

/// One embedded file under `/assets/{version}/`.
pub struct Asset {
    /// Its path under the version.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
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
    asset!("js/approach.js", JS),
    asset!("js/channel.js", JS),
    asset!("js/creator.js", JS),
    asset!("js/dashboard.js", JS),
    asset!("js/e2e.js", JS),
    asset!("js/home.js", JS),
    asset!("js/join.js", JS),
    asset!("js/map.js", JS),
    asset!("js/meet.js", JS),
    asset!("js/notices.js", JS),
    asset!("js/people.js", JS),
    asset!("js/position.js", JS),
    asset!("js/qr.js", JS),
    asset!("js/qrcode.js", JS),
    asset!("js/seal.js", JS),
    asset!("js/state.js", JS),
    asset!("js/ui.js", JS),
];

/// The HTML templates.
pub const HOME_HTML: &str = include_str!("../../web/index.html");
pub const JOIN_HTML: &str = include_str!("../../web/join.html");
pub const DASHBOARD_HTML: &str = include_str!("../../web/dashboard.html");

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

/// A strong ETag of a body.
pub fn etag(body: &[u8]) -> String {
    format!("\"{:016x}\"", fnv1a(&[body]))
}

/// Whether the request's `If-None-Match` names this ETag (or `*`).
pub fn not_modified(req: &HttpRequest, tag: &str) -> bool {
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
    // The browser asks the geocoder itself (the server never proxies searches), so the policy must let the page reach its origin.
    let geocoder = settings.geocoder_url.as_ref().map(|g| format!(" {}", g.csp_source())).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:{tiles}; \
         connect-src 'self' ws: wss:{geocoder}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
         object-src 'none'"
    )
}

/// Fills a page template with the asset path and the settings the page reads from `<meta>`.
fn render(template: &str, settings: &Settings) -> String {
    let tile_url = settings.tile_url.as_ref().map(|t| t.as_str()).unwrap_or("none");
    template
        .replace("{{assets}}", &format!("/assets/{}", assets_version()))
        .replace("{{tile_url}}", &html_escape(tile_url))
        .replace("{{geocoder_url}}", &html_escape(settings.geocoder_url.as_ref().map(|g| g.as_str()).unwrap_or("")))
        .replace("{{location_ttl}}", &settings.limits.location_ttl.as_secs().to_string())
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
}

/// An HTML page with the security headers; revalidated on every load (ETag).
pub fn page(req: &HttpRequest, template: &str, settings: &Settings) -> HttpResponse {
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

/// The embedded asset at `path`, if there is one.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
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

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let mut map: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        map.entry("JWT_SECRET".into()).or_insert_with(|| "pages-test-secret-0123456789abcdef".into());
        Settings::from_map(&map).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn geocoder_reaches_the_meta_and_the_csp_only_when_set() {
        let off = settings(&[]);
        assert!(render(JOIN_HTML, &off).contains(r#"<meta name="geocoder-url" content="">"#));
        assert!(content_security_policy(&off).contains("connect-src 'self' ws: wss:;"));
        let on = settings(&[("GEOCODER_URL", "https://nominatim.example.org/geo/")]);
        for template in [HOME_HTML, JOIN_HTML, DASHBOARD_HTML] {
            let page = render(template, &on);
            assert!(page.contains(r#"<meta name="geocoder-url" content="https://nominatim.example.org/geo">"#));
        }
        assert!(content_security_policy(&on).contains("connect-src 'self' ws: wss: https://nominatim.example.org;"));
    }

    #[test]
    fn escapes() {
        assert_eq!(html_escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
