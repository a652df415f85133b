//! `GET /metrics`: the Prometheus text exposition of `crate::metrics`.

use actix_web::{web, HttpResponse};

use super::AppState;

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text exposition", content_type = "text/plain"),
))]
pub async fn endpoint(state: web::Data<AppState>) -> HttpResponse {
    state.abuse.report();
    HttpResponse::Ok().content_type(prometheus::TEXT_FORMAT).body(state.metrics.render())
}
