//! The JSON body extractor: size limit (chunked bodies too), media type, syntax, then typed
//! fields with the failing field named, so every refusal gets its proper status.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest request body accepted (SPEC §2).
pub const MAX_BODY_BYTES: usize = 16_384;

/// The longest a body may take to arrive once its head has: 16 KiB needs no more, and a client
/// trickling it in would hold its connection (and a task) for as long as it liked.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// A request body parsed as JSON into `T`; an empty body counts as `{}`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut payload = payload.take();
        Box::pin(async move {
            // Checked before reading too, so an oversized declared body is refused unread.
            check_declared_len(declared_len)?;
            let mut body = Vec::with_capacity(declared_len.unwrap_or(0).min(MAX_BODY_BYTES));
            let read = async {
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("cannot read request body: {e}")))?;
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(())
            };
            tokio::time::timeout(BODY_DEADLINE, read).await.map_err(|_| ApiError::RequestTimeout)??;
            parse_json_body(&body, content_type.as_deref(), declared_len).map(JsonBody)
        })
    }
}

fn check_declared_len(declared_len: Option<usize>) -> Result<(), ApiError> {
    match declared_len {
        Some(n) if n > MAX_BODY_BYTES => Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES)),
        _ => Ok(()),
    }
}

/// The body checks without the stream: size, media type, syntax, then `T` with the failing field named.
///
/// `content_type` is the `Content-Type` header as text and `declared_len` the `Content-Length`,
/// when they were present and readable. Errors are only 400, 413, 415 and 422.
pub fn parse_json_body<T: DeserializeOwned>(
    body: &[u8],
    content_type: Option<&str>,
    declared_len: Option<usize>,
) -> Result<T, ApiError> {
    check_declared_len(declared_len)?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    // Only a body with no bytes at all is `{}`: whitespace alone is no JSON text.
    if !body.is_empty() && !content_type.is_some_and(is_json_media_type) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let value: serde_json::Value = if body.is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?
    };
    if !value.is_object() {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        match e.path().iter().next().map(|segment| segment.to_string()) {
            Some(field) if !field.is_empty() && field != "?" => ApiError::field(field, "is invalid"),
            _ => ApiError::field("body", e.inner().to_string()),
        }
    })
}

/// `application/json`, with parameters, or any `application/*+json`.
fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/vnd.api+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/x-www-form-urlencoded"));
    }

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        n: Option<i64>,
    }

    fn status(result: Result<Body, ApiError>) -> u16 {
        use actix_web::ResponseError;
        result.err().map_or(200, |e| e.status_code().as_u16())
    }

    #[test]
    fn parses_without_a_request() {
        let json = Some("application/json");
        assert_eq!(parse_json_body::<Body>(br#"{"n": 3, "other": 1}"#, json, None).ok().and_then(|b| b.n), Some(3));
        assert_eq!(parse_json_body::<Body>(b"", None, Some(0)).ok().map(|b| b.n), Some(None));
        assert_eq!(status(parse_json_body(b" \r\n", json, Some(3))), 400);
        assert_eq!(status(parse_json_body(b"{", json, None)), 400);
        assert_eq!(status(parse_json_body(b"{}", json, Some(MAX_BODY_BYTES + 1))), 413);
        assert_eq!(status(parse_json_body(&vec![b' '; MAX_BODY_BYTES + 1], json, None)), 413);
        assert_eq!(status(parse_json_body(b"{}", Some("text/plain"), None)), 415);
        assert_eq!(status(parse_json_body(b"{}", None, None)), 415);
        assert_eq!(status(parse_json_body(b"[]", json, None)), 422);
        assert_eq!(status(parse_json_body(br#"{"n": "3"}"#, json, None)), 422);
    }
}
