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
        let is_json = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(is_json_media_type);
        let mut payload = payload.take();
        Box::pin(async move {
            if declared_len.is_some_and(|n| n > MAX_BODY_BYTES) {
                return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
            }
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
            // Only a body with no bytes at all is `{}`: whitespace alone is no JSON text.
            if !body.is_empty() && is_json != Some(true) {
                return Err(ApiError::UnsupportedMediaType);
            }
            let value: serde_json::Value = if body.is_empty() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?
            };
            if !value.is_object() {
                return Err(ApiError::field("body", "must be a JSON object"));
            }
            serde_path_to_error::deserialize(value).map(JsonBody).map_err(|e| {
                match e.path().iter().next().map(|segment| segment.to_string()) {
                    Some(field) if !field.is_empty() && field != "?" => ApiError::field(field, "is invalid"),
                    _ => ApiError::field("body", e.inner().to_string()),
                }
            })
        })
    }
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
}
