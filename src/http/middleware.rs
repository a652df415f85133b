//! Cross-cutting HTTP behaviour: request ids and access logs, CORS, and Phoenix-shaped bodies
//! for errors that no handler shaped (an extractor's refusal, say).

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, Method};
use actix_web::middleware::{ErrorHandlerResponse, Next};
use actix_web::{web, Error, HttpMessage, HttpResponse};

use super::AppState;

/// The header that carries the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A caller's request id is kept when it is short printable ASCII; otherwise a new one is made.
fn acceptable_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:+=/".contains(&b));
    ok.then(|| s.to_owned())
}

/// The query string with the value of every `token` parameter replaced.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("token") => format!("{key}=[REDACTED]"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Gives every response an `x-request-id` and writes one access-log line per request.
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(acceptable_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    // From here (the headers have arrived) the request counts as in flight: a drain waits for it.
    let in_flight = req.app_data::<web::Data<AppState>>().map(|state| state.drain.request_started());
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let query = redact_query(req.query_string());
    let mut res = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    // While draining, a connection closes after its answer instead of idling in keep-alive.
    if in_flight.as_ref().is_some_and(|guard| guard.draining()) {
        res.response_mut().head_mut().set_connection_type(ConnectionType::Close);
    }
    drop(in_flight);
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
        // The route template, never the concrete path: ids must not become label values.
        let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
        state.metrics.observe_http(&route, method.as_str(), res.status().as_u16(), elapsed);
    }
    let sep = if query.is_empty() { "" } else { "?" };
    log::info!(
        target: "access",
        "{method} {path}{sep}{query} {status} {ms:.1}ms request_id={id}",
        status = res.status().as_u16(),
        ms = elapsed * 1000.0,
    );
    Ok(res)
}

/// CORS from `CORS_ALLOWED_ORIGINS`: the origin is echoed only when allowed (never `null`, never
/// `*`), and every response says `Vary: Origin`.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = match (&origin, req.app_data::<web::Data<AppState>>()) {
        (Some(o), Some(state)) => o.to_str().is_ok_and(|o| state.settings.cors_allowed_origins.allows(o)),
        _ => false,
    };
    let preflight = req.method() == Method::OPTIONS
        && origin.is_some()
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut res = HttpResponse::NoContent();
        res.insert_header((header::VARY, "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"));
        if let (true, Some(origin)) = (allowed, origin) {
            let requested = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
            res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, PUT, PATCH, DELETE, OPTIONS"))
                .insert_header((
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    requested.unwrap_or_else(|| HeaderValue::from_static("authorization, content-type, x-request-id")),
                ))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"));
        }
        return Ok(req.into_response(res.finish()).map_into_right_body());
    }
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let (true, Some(origin)) = (allowed, origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("x-request-id"));
    }
    Ok(res.map_into_left_body())
}

/// Answers HEAD like GET, as Phoenix's `Plug.Head` does (load balancers probe with it); the
/// HTTP codec leaves the body out because the request on the wire was HEAD.
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    next.call(req).await
}

/// Fills an error response that has no body yet with `{"errors":{"detail": reason}}`.
pub fn phoenix_error_body<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    if res.response().headers().contains_key(header::CONTENT_TYPE) {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let detail = status.canonical_reason().unwrap_or("Error");
    let body = serde_json::json!({ "errors": { "detail": detail } }).to_string();
    let (req, res) = res.into_parts();
    let mut res = res.set_body(body);
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, res).map_into_boxed_body().map_into_right_body()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted() {
        assert_eq!(redact_query("token=abc.def&vsn=2.0.0"), "token=[REDACTED]&vsn=2.0.0");
        assert_eq!(redact_query("vsn=2.0.0&TOKEN=x"), "vsn=2.0.0&TOKEN=[REDACTED]");
        assert_eq!(redact_query(""), "");
    }

    #[test]
    fn request_ids() {
        assert_eq!(acceptable_request_id(&HeaderValue::from_static("abc-123")), Some("abc-123".into()));
        assert_eq!(acceptable_request_id(&HeaderValue::from_static("has space")), None);
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap_or(HeaderValue::from_static(""));
        assert_eq!(acceptable_request_id(&long), None);
    }
}
