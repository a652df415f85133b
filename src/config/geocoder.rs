//! `GEOCODER_URL`: a Nominatim-compatible search service the web client may ask for places.

/// The base URL of a Nominatim-compatible service (`{base}/search?format=jsonv2&q=…`), which the
/// browser calls directly: the server never proxies it, so it learns nothing of what is searched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeocoderUrl(String);

impl GeocoderUrl {
    /// Reads `GEOCODER_URL`: an http(s) URL with a host, no query or fragment, no spaces or
    /// quotes (it goes into a `<meta>` attribute and the Content-Security-Policy).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim().trim_end_matches('/');
        let Some((scheme, rest)) = trimmed.split_once("://").filter(|(s, _)| *s == "http" || *s == "https") else {
            return Err(format!("{raw:?} must be an http:// or https:// URL"));
        };
        let host = rest.split('/').next().unwrap_or_default();
        let host_ok = !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            && !host.starts_with(['.', ':']);
        if !host_ok {
            return Err(format!("{raw:?} has no usable host"));
        }
        if rest.contains(|c: char| c.is_whitespace() || c.is_control() || "\"'<>\\?#;".contains(c)) {
            return Err(format!("{raw:?} must not contain spaces, quotes, a query or a fragment"));
        }
        Ok(Self(format!("{scheme}://{rest}")))
    }

    /// The base URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The origin the browser calls, as a Content-Security-Policy `connect-src` source.
    pub fn csp_source(&self) -> String {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("https", &self.0));
        format!("{scheme}://{}", rest.split('/').next().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_http_urls_with_a_path() {
        let g = GeocoderUrl::parse("https://nominatim.example.org/geo/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(g.as_str(), "https://nominatim.example.org/geo");
        assert_eq!(g.csp_source(), "https://nominatim.example.org");
        let local = GeocoderUrl::parse("http://127.0.0.1:8088").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(local.csp_source(), "http://127.0.0.1:8088");
    }

    #[test]
    fn refuses_what_would_break_a_page_or_its_policy() {
        for bad in [
            "ftp://x.org",
            "nominatim.org",
            "https://",
            "https://x.org/a b",
            "https://x.org/\"",
            "https://x.org/?q=1",
            "https://x.org/#f",
            "https://.org",
            "javascript://x",
        ] {
            assert!(GeocoderUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
