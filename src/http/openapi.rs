//! The OpenAPI 3 document, generated from the handlers' annotations.

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Required, Schema};
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
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The creator_token of POST /api/sessions (end the session, remove anyone), or a \
                         participant's websocket_token of POST /api/sessions/{id}/join (leave)",
                    ))
                    .build(),
            ),
        );
    }
}

/// `(source operation, link name, target operation, [(parameter, runtime expression)])`.
type OpenApiLink = (&'static str, &'static str, &'static str, &'static [(&'static str, &'static str)]);

/// Where the ids of a `201` go next, as OpenAPI links: `(source operation, link name, target
/// operation, parameters)`. Clients and stateful testers (schemathesis) follow them from a created
/// session to everything done with it. The bearer tokens travel by the security scheme, not by
/// links, and the socket has none: following it takes a WebSocket client.
const LINKS: &[OpenApiLink] = &[
    ("create", "ShowSession", "show", &[("path.id", "$response.body#/session_id")]),
    ("create", "JoinSession", "join", &[("path.id", "$response.body#/session_id")]),
    ("create", "ListParticipants", "list", &[("path.id", "$response.body#/session_id")]),
    ("create", "SessionQr", "qr", &[("path.id", "$response.body#/session_id")]),
    ("create", "EndSession", "end", &[("path.id", "$response.body#/session_id")]),
    ("create", "UpdateSession", "update", &[("path.id", "$response.body#/session_id")]),
    ("create", "SetDestination", "put", &[("path.id", "$response.body#/session_id")]),
    ("create", "ClearDestination", "clear", &[("path.id", "$response.body#/session_id")]),
    ("join", "Leave", "remove", &[("path.id", "$request.path.id"), ("path.user_id", "$response.body#/user_id")]),
];

/// Says `required: false` on every request body whose schema requires no property: the body
/// extractor reads an empty body as `{}`, so such a body may be left out altogether.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let schemas = openapi.components.as_ref().map(|c| c.schemas.clone()).unwrap_or_default();
        let requires_nothing = |content: &utoipa::openapi::Content| match &content.schema {
            Some(RefOr::Ref(r)) => {
                let name = r.ref_location.rsplit('/').next().unwrap_or_default();
                matches!(schemas.get(name), Some(RefOr::T(Schema::Object(o))) if o.required.is_empty())
            }
            Some(RefOr::T(Schema::Object(o))) => o.required.is_empty(),
            _ => false,
        };
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten() {
                if let Some(body) = operation.request_body.as_mut() {
                    if body.content.values().all(requires_nothing) {
                        body.required = Some(Required::False);
                    }
                }
            }
        }
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
        super::sessions::update,
        super::sessions::end,
        super::destination::put,
        super::destination::clear,
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
    modifiers(&BearerAuth, &OptionalBodies),
    tags(
        (name = "sessions", description = "Create, show and end sharing sessions"),
        (name = "participants", description = "Join, list and remove participants"),
        (name = "health", description = "Probes and metrics"),
        (name = "realtime", description = "The Phoenix Channels WebSocket"),
    )
)]
pub struct ApiDoc;

/// The document as served: utoipa's, with [`LINKS`] added to the `201`s they start from.
pub fn document_json() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    // Added as JSON rather than through utoipa's `Link`, which writes its fields in snake_case
    // (`operation_id`), a name no OpenAPI reader knows.
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return doc;
    };
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
        let source = operation.get("operationId").and_then(Value::as_str).unwrap_or_default().to_owned();
        let Some(created) = operation.pointer_mut("/responses/201").and_then(Value::as_object_mut) else {
            continue;
        };
        for (_, name, target, parameters) in LINKS.iter().filter(|(from, ..)| *from == source) {
            let parameters: serde_json::Map<String, Value> =
                parameters.iter().map(|(param, value)| ((*param).to_owned(), Value::from(*value))).collect();
            let links = created.entry("links").or_insert_with(|| json!({}));
            if let Some(links) = links.as_object_mut() {
                links.insert((*name).to_owned(), json!({ "operationId": target, "parameters": parameters }));
            }
        }
    }
    doc
}

/// `GET /api/openapi.json`.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(document_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AvatarColor, DisplayName, SessionName};

    /// `(method, path, operation)` of every operation in the served document.
    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                out.push((method.clone(), path.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn every_link_reaches_an_operation_and_its_parameters() {
        let doc = document_json();
        let ops = operations(&doc);
        let by_id = |id: &str| ops.iter().find(|(_, _, op)| op["operationId"] == id).map(|(_, _, op)| op.clone());
        for (source, name, target, parameters) in LINKS {
            let from = by_id(source).unwrap_or_else(|| panic!("{name}: no operation {source}"));
            assert_eq!(from["responses"]["201"]["links"][name]["operationId"], *target, "{name} is on {source}'s 201");
            let to = by_id(target).unwrap_or_else(|| panic!("{name}: no operation {target}"));
            for (param, _) in *parameters {
                let (location, param_name) = param.split_once('.').unwrap_or_else(|| panic!("{param}"));
                let declared = to["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == param_name && p["in"] == location);
                assert!(declared, "{name}: {target} has no {location} parameter {param_name}");
            }
        }
    }

    #[test]
    fn only_bodies_that_require_nothing_are_optional() {
        let doc = document_json();
        assert_eq!(doc["paths"]["/api/sessions"]["post"]["requestBody"]["required"], false);
        assert_eq!(doc["paths"]["/api/sessions/{id}/join"]["post"]["requestBody"]["required"], true);
    }

    #[test]
    fn every_documented_operation_is_a_route() {
        for (method, path, _) in operations(&document_json()) {
            let routed = super::super::ENDPOINTS
                .iter()
                .any(|e| e.path == path && e.method.as_str().eq_ignore_ascii_case(&method));
            assert!(routed, "{method} {path} is documented but not routed");
        }
    }

    /// The `pattern` of one property of a component schema.
    fn pattern(doc: &Value, schema: &str, property: &str) -> regex::Regex {
        let pattern = doc["components"]["schemas"][schema]["properties"][property]["pattern"].as_str();
        let pattern = pattern.unwrap_or_else(|| panic!("{schema}.{property} has a pattern"));
        regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{schema}.{property}: {e}"))
    }

    #[test]
    fn name_patterns_accept_what_the_domain_accepts() {
        let doc = document_json();
        let display_name = pattern(&doc, "JoinRequest", "display_name");
        let session_name = pattern(&doc, "CreateSessionRequest", "name");
        let colour = pattern(&doc, "JoinRequest", "avatar_color");
        let long = |n: usize| "é".repeat(n);
        let samples = [
            String::new(),
            " ".into(),
            "\t\n \u{3000}".into(),
            "a".into(),
            " a ".into(),
            "Ana  María".into(),
            "a\u{7}b".into(),
            "a\nb".into(),
            "\u{85}a".into(),
            "a\u{a0}b".into(),
            "\u{feff}".into(),
            "\u{1c}".into(),
            "\u{2028}x\u{2029}".into(),
            long(50),
            long(51),
            format!("  {}\t", long(50)),
            long(100),
            long(101),
            format!("\u{a0}{}\u{a0}", long(100)),
            "#1e90ff".into(),
            "#1E90FF\n".into(),
        ];
        for s in &samples {
            assert_eq!(display_name.is_match(s), DisplayName::parse(s).is_ok(), "display_name {s:?}");
            let as_name = SessionName::parse(s).is_ok();
            assert_eq!(session_name.is_match(s), as_name, "name {s:?}");
            let as_colour = AvatarColor::parse(s).is_ok();
            assert_eq!(colour.is_match(s) && s.chars().count() == 7, as_colour, "avatar_color {s:?}");
        }
    }
}
