//! The OpenAPI 3 document, generated from the handlers' annotations.

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// `{"errors": {"detail": "…"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, under `detail`.
    pub errors: ErrorDetail,
}

/// The `detail` of an error.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong, for people.
    pub detail: String,
}

/// `{"errors": {"field": ["message", …]}}`.
#[derive(Serialize, ToSchema)]
pub struct ValidationErrorBody {
    /// Messages per field.
    pub errors: BTreeMap<String, Vec<String>>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "location-sharing", description = "Real-time, anonymous, temporary location sharing. \
        Live updates flow over the Phoenix Channels WebSocket at /socket/websocket (see the README)."),
    paths(
        super::sessions::create,
        super::sessions::show,
        super::sessions::end,
        super::participants::join,
        super::participants::list,
        super::participants::remove,
        super::health::basic,
        super::health::detailed,
        super::health::ready,
        super::health::live,
        super::socket::upgrade,
        super::web_client::qr,
        super::metrics::endpoint,
    ),
    components(schemas(ErrorBody, ErrorDetail, ValidationErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "sessions", description = "Create, show and end sharing sessions"),
        (name = "participants", description = "Join, list and remove participants"),
        (name = "health", description = "Probes and metrics"),
        (name = "realtime", description = "The Phoenix Channels WebSocket"),
    )
)]
pub struct ApiDoc;

/// `GET /api/openapi.json`.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
