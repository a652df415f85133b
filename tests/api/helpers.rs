//! A real server per test (`location_sharing::testing`: on a free port, with its own database —
//! a fresh SQLite file, or the shared PostgreSQL of `TEST_DATABASE_URL` — and the Redis of
//! `TEST_REDIS_URL` when that is set), and the requests and checks every test uses.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use actix::Addr;
use actix_web::web::Bytes;
use awc::http::header::HeaderMap;
use awc::http::Method;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use location_sharing::config::Settings;
use location_sharing::db::Db;
use location_sharing::realtime::SessionRegistry;
use serde_json::{json, Value};

use location_sharing::testing::TestServer;
pub use location_sharing::testing::{test_database_url, test_redis_url, without_redis, JWT_SECRET};

/// A server running in the test's actix system, and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:{port}`.
    pub address: String,
    /// The settings it was built with.
    pub settings: Settings,
    /// An HTTP client (no compression, plain HTTP).
    pub client: awc::Client,
    /// The session registry (the supervisor of session actors), to reach them directly.
    pub registry: Addr<SessionRegistry>,
    /// Keeps the server's files alive as long as the app.
    _server: TestServer,
}

/// A client with a generous timeout (the 60-join bursts) and no default compression.
pub fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(30)).finish()
}

/// A server with the default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server whose settings the test adjusts first (see [`location_sharing::testing::spawn_app_with`]).
pub async fn spawn_app_with(configure: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    let server = location_sharing::testing::spawn_app_with(configure).await;
    TestApp {
        address: server.address.clone(),
        settings: server.settings.clone(),
        client: client(),
        registry: server.registry.clone(),
        _server: server,
    }
}

/// A body to send.
pub enum Body {
    /// No body at all.
    None,
    /// A JSON value, as `application/json`.
    Json(Value),
    /// Raw bytes, with whatever content type the caller sets.
    Raw(Bytes),
    /// Raw chunks sent with `Transfer-Encoding: chunked` (no content length).
    Chunked(Vec<Bytes>),
}

/// A response, read to the end.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
}

impl Resp {
    /// One header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// Every value of a header, split at commas, lowercased and trimmed.
    pub fn header_tokens(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Panics with the body when the status is not `status`.
    #[track_caller]
    pub fn assert_status(&self, status: u16, context: &str) -> &Self {
        assert_eq!(self.status, status, "{context}: unexpected status; body: {}", String::from_utf8_lossy(&self.body));
        self
    }

    /// The status, and a Phoenix `{"errors":{"detail": "…"}}` body with nothing else.
    #[track_caller]
    pub fn assert_detail_error(&self, status: u16, context: &str) -> &Self {
        self.assert_status(status, context);
        assert_json_content_type(self, context);
        let detail = self.json.pointer("/errors/detail");
        assert!(
            detail.and_then(Value::as_str).is_some_and(|d| !d.is_empty()),
            "{context}: expected {{\"errors\":{{\"detail\":…}}}}, got {}",
            self.json
        );
        assert_keys(&self.json, &["errors"], context);
        assert_keys(&self.json["errors"], &["detail"], context);
        self
    }

    /// A 422 whose `errors` has exactly the given fields, each with at least one message.
    #[track_caller]
    pub fn assert_field_errors(&self, fields: &[&str], context: &str) -> &Self {
        self.assert_status(422, context);
        assert_json_content_type(self, context);
        assert_keys(&self.json, &["errors"], context);
        assert_keys(&self.json["errors"], fields, context);
        for field in fields {
            let messages = self.json["errors"][field].as_array();
            assert!(
                messages.is_some_and(|m| !m.is_empty() && m.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty()))),
                "{context}: errors.{field} must be a non-empty list of messages, got {}",
                self.json
            );
        }
        self
    }

    /// A 422 in the validation shape, whatever field it names.
    #[track_caller]
    pub fn assert_some_field_error(&self, context: &str) -> &Self {
        self.assert_status(422, context);
        let errors = self.json.get("errors").and_then(Value::as_object);
        assert!(
            errors.is_some_and(|e| !e.is_empty()
                && !e.contains_key("detail")
                && e.values().all(|m| m.as_array().is_some_and(|m| !m.is_empty() && m.iter().all(Value::is_string)))),
            "{context}: expected {{\"errors\":{{field:[…]}}}}, got {}",
            self.json
        );
        self
    }

    /// A 204 with an empty body.
    #[track_caller]
    pub fn assert_no_content(&self, context: &str) -> &Self {
        self.assert_status(204, context);
        assert!(self.body.is_empty(), "{context}: a 204 must have no body, got {:?}", self.body);
        self
    }
}

/// The response is JSON.
#[track_caller]
pub fn assert_json_content_type(resp: &Resp, context: &str) {
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "{context}: content-type {ct:?} is not JSON");
}

/// `value` is an object with exactly these keys.
#[track_caller]
pub fn assert_keys(value: &Value, keys: &[&str], context: &str) {
    let actual: BTreeSet<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("{context}: {value} is not an object"))
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = keys.iter().copied().collect();
    assert_eq!(actual, expected, "{context}: keys of {value}");
}

/// A canonical, lowercase, hyphenated UUID v4.
#[track_caller]
pub fn assert_uuid_v4(value: &Value, context: &str) -> String {
    let s = value.as_str().unwrap_or_else(|| panic!("{context}: {value} is not a string"));
    let parsed = uuid::Uuid::try_parse(s).unwrap_or_else(|e| panic!("{context}: {s:?} is not a UUID: {e}"));
    assert_eq!(parsed.get_version_num(), 4, "{context}: {s} is not a v4 UUID");
    assert_eq!(parsed.hyphenated().to_string(), s, "{context}: {s} is not canonical");
    s.to_owned()
}

/// An RFC 3339 UTC time written with a `Z`.
#[track_caller]
pub fn assert_rfc3339_z(value: &Value, context: &str) -> DateTime<Utc> {
    let s = value.as_str().unwrap_or_else(|| panic!("{context}: {value} is not a string"));
    assert!(s.ends_with('Z'), "{context}: {s} does not end in Z");
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{context}: {s} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// `^#[0-9A-F]{6}$`.
pub fn is_upper_hex_colour(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// A created session.
#[derive(Debug, Clone)]
pub struct Created {
    /// `session_id`.
    pub id: String,
    /// `creator_token`.
    pub creator_token: String,
    /// The whole answer.
    pub json: Value,
}

/// A joined participant.
#[derive(Debug, Clone)]
pub struct Joined {
    /// `user_id`.
    pub user_id: String,
    /// `websocket_token`.
    pub token: String,
    /// The whole answer.
    pub json: Value,
}

impl TestApp {
    /// `{address}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Sends any request.
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Body) -> Resp {
        send(&self.client, method, &self.url(path), headers, body).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], Body::None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, &[], Body::Json(body.clone())).await
    }

    /// `DELETE path`, with `Authorization: Bearer {token}` when given.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        match token {
            Some(token) => self.delete_with_auth(path, &format!("Bearer {token}")).await,
            None => self.send(Method::DELETE, path, &[], Body::None).await,
        }
    }

    /// `DELETE path` with this `Authorization` header.
    pub async fn delete_with_auth(&self, path: &str, authorization: &str) -> Resp {
        self.send(Method::DELETE, path, &[("authorization", authorization)], Body::None).await
    }

    /// `POST /api/sessions`.
    pub async fn create_session(&self, body: &Value) -> Resp {
        self.post_json("/api/sessions", body).await
    }

    /// A new session with default settings (asserts 201).
    pub async fn new_session(&self) -> Created {
        let resp = self.create_session(&json!({})).await;
        resp.assert_status(201, "create session");
        Created {
            id: resp.json["session_id"].as_str().expect("session_id").to_owned(),
            creator_token: resp.json["creator_token"].as_str().expect("creator_token").to_owned(),
            json: resp.json,
        }
    }

    /// `POST /api/sessions/{sid}/join`.
    pub async fn join(&self, sid: &str, body: &Value) -> Resp {
        self.post_json(&format!("/api/sessions/{sid}/join"), body).await
    }

    /// Joins as `name` (asserts 201).
    pub async fn join_as(&self, sid: &str, name: &str) -> Joined {
        let resp = self.join(sid, &json!({ "display_name": name })).await;
        resp.assert_status(201, &format!("join {sid} as {name}"));
        Joined {
            user_id: resp.json["user_id"].as_str().expect("user_id").to_owned(),
            token: resp.json["websocket_token"].as_str().expect("websocket_token").to_owned(),
            json: resp.json,
        }
    }

    /// A new session and these participants, joined through REST in this order.
    pub async fn session_with(&self, names: &[&str]) -> (Created, Vec<Joined>) {
        let session = self.new_session().await;
        let mut joined = Vec::new();
        for name in names {
            joined.push(self.join_as(&session.id, name).await);
        }
        (session, joined)
    }

    /// `GET /api/sessions/{sid}`.
    pub async fn get_session(&self, sid: &str) -> Resp {
        self.get(&format!("/api/sessions/{sid}")).await
    }

    /// `GET /api/sessions/{sid}/participants`.
    pub async fn participants(&self, sid: &str) -> Resp {
        self.get(&format!("/api/sessions/{sid}/participants")).await
    }

    /// The listed user ids, in order (asserts 200).
    pub async fn participant_ids(&self, sid: &str) -> Vec<String> {
        let resp = self.participants(sid).await;
        resp.assert_status(200, "list participants");
        resp.json["participants"]
            .as_array()
            .expect("a participants array")
            .iter()
            .map(|p| p["user_id"].as_str().expect("user_id").to_owned())
            .collect()
    }

    /// `participant_count` of a session (asserts 200).
    pub async fn participant_count(&self, sid: &str) -> u64 {
        let resp = self.get_session(sid).await;
        resp.assert_status(200, "show session");
        resp.json["participant_count"].as_u64().expect("participant_count")
    }

    /// `DELETE /api/sessions/{sid}/participants/{uid}`.
    pub async fn remove(&self, sid: &str, uid: &str, token: Option<&str>) -> Resp {
        self.delete(&format!("/api/sessions/{sid}/participants/{uid}"), token).await
    }

    /// `DELETE /api/sessions/{sid}`.
    pub async fn end_session(&self, sid: &str, token: Option<&str>) -> Resp {
        self.delete(&format!("/api/sessions/{sid}"), token).await
    }

    /// A handle on the app's database, for tests that must move a session's clock.
    pub fn db(&self) -> Db {
        Db::connect(&self.settings.database_url, 1).expect("database handle")
    }

    /// Moves a session's `expires_at` into the past, as if its time had run out.
    pub async fn expire_session(&self, sid: &str) {
        self.set_expires_at(sid, Utc::now() - chrono::Duration::seconds(5)).await;
    }

    /// Moves a session's `expires_at` in the database (tokens keep their own `exp`).
    pub async fn set_expires_at(&self, sid: &str, at: DateTime<Utc>) {
        use diesel::prelude::*;
        use location_sharing::db::schema::sessions;
        let sid = sid.to_owned();
        let at = at.naive_utc();
        let updated = self
            .db()
            .run(move |conn| {
                diesel::update(sessions::table.find(sid))
                    .set(sessions::expires_at.eq(at))
                    .execute(conn)
                    .map_err(Into::into)
            })
            .await
            .expect("update expires_at");
        assert_eq!(updated, 1, "the session exists");
    }
}

impl TestApp {
    /// The value of a metric without labels in `/metrics` (panics when it is not there).
    pub async fn metric(&self, name: &str) -> f64 {
        let resp = self.get("/metrics").await;
        resp.assert_status(200, "/metrics");
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (metric, value) = line.split_once(' ')?;
                (metric == name).then(|| value.trim().parse::<f64>().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{text}"))
    }

    /// Another server sharing this one's database, Redis and secret: a second replica.
    pub async fn spawn_replica(&self) -> TestApp {
        use location_sharing::config::DatabaseUrl;
        let database_url = match &self.settings.database_url {
            DatabaseUrl::Postgres(url) => url.clone(),
            DatabaseUrl::Sqlite(path) => format!("sqlite://{path}"),
        };
        let redis_url = self.settings.redis_url.as_ref().map(|url| url.expose().to_owned());
        spawn_app_with(move |vars| {
            vars.insert("DATABASE_URL".into(), database_url);
            match redis_url {
                Some(url) => vars.insert("REDIS_URL".into(), url),
                None => vars.remove("REDIS_URL"),
            };
        })
        .await
    }

    /// `GET /health/live` answers 200.
    pub async fn assert_live(&self, context: &str) {
        self.get("/health/live").await.assert_status(200, &format!("{context}: /health/live"));
    }
}

/// Sends a request with any client (also to servers the test did not spawn in-process).
pub async fn send(client: &awc::Client, method: Method, url: &str, headers: &[(&str, &str)], body: Body) -> Resp {
    let mut req = client.request(method.clone(), url);
    for (name, value) in headers {
        req = req.insert_header((*name, *value));
    }
    let sent = match body {
        Body::None => req.send().await,
        Body::Json(value) => req.send_json(&value).await,
        Body::Raw(bytes) => req.send_body(bytes).await,
        Body::Chunked(chunks) => {
            let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
            req.send_stream(stream).await
        }
    };
    let mut res = sent.unwrap_or_else(|e| panic!("{method} {url}: request failed: {e}"));
    let body = res.body().limit(4 << 20).await.unwrap_or_else(|e| panic!("{method} {url}: cannot read body: {e}"));
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Resp { status: res.status().as_u16(), headers: res.headers().clone(), body, json }
}

/// Decodes unpadded base64url.
pub fn base64url_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("{:?} is not base64url", c as char),
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        acc = (acc << 6) | value(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xFF) as u8);
        }
    }
    out
}

/// Encodes unpadded base64url.
pub fn base64url_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The header and payload of a JWT, unverified.
pub fn decode_jwt(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token} is not a JWS compact token");
    assert!(!parts[2].is_empty(), "{token} is unsigned");
    let header = serde_json::from_slice(&base64url_decode(parts[0])).expect("JSON header");
    let payload = serde_json::from_slice(&base64url_decode(parts[1])).expect("JSON payload");
    (header, payload)
}

/// Signs any claims with any HMAC algorithm and secret.
pub fn sign(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes())).expect("sign")
}

/// A token with `"alg": "none"` and no signature.
pub fn unsigned(claims: &Value) -> String {
    let header = base64url_encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url_encode(claims.to_string().as_bytes());
    format!("{header}.{payload}.")
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

impl TestApp {
    /// `method path` with a JSON body and `Authorization: Bearer {token}` when given.
    pub async fn json_with_token(&self, method: Method, path: &str, token: Option<&str>, body: &Value) -> Resp {
        match token {
            Some(token) => {
                let auth = format!("Bearer {token}");
                self.send(method, path, &[("authorization", auth.as_str())], Body::Json(body.clone())).await
            }
            None => self.send(method, path, &[], Body::Json(body.clone())).await,
        }
    }

    /// `PUT /api/sessions/{sid}/destination`.
    pub async fn put_destination(&self, sid: &str, token: Option<&str>, body: &Value) -> Resp {
        self.json_with_token(Method::PUT, &format!("/api/sessions/{sid}/destination"), token, body).await
    }

    /// `DELETE /api/sessions/{sid}/destination`.
    pub async fn delete_destination(&self, sid: &str, token: Option<&str>) -> Resp {
        self.delete(&format!("/api/sessions/{sid}/destination"), token).await
    }

    /// `PATCH /api/sessions/{sid}`.
    pub async fn patch_session(&self, sid: &str, token: Option<&str>, body: &Value) -> Resp {
        self.json_with_token(Method::PATCH, &format!("/api/sessions/{sid}"), token, body).await
    }

    /// The value of a metric line (its name with labels, e.g. `x{mode="fast"}`), or `None`.
    pub async fn try_metric(&self, name: &str) -> Option<f64> {
        let resp = self.get("/metrics").await;
        resp.assert_status(200, "/metrics");
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
            let (metric, value) = line.rsplit_once(' ')?;
            (metric == name).then(|| value.trim().parse::<f64>().ok()).flatten()
        })
    }
}

impl TestApp {
    /// A valid creator token for a session id that does not exist (for the 404s).
    pub async fn creator_token_for_unknown(&self) -> (String, String) {
        let sid = uuid::Uuid::new_v4().to_string();
        let exp = (Utc::now() + chrono::Duration::minutes(10)).timestamp();
        let iss = decode_jwt(&self.new_session().await.creator_token).1["iss"].clone();
        let token = sign(
            Algorithm::HS256,
            JWT_SECRET,
            &json!({"iss": iss, "sub": sid, "sid": sid, "role": "creator", "exp": exp, "iat": exp - 600}),
        );
        (sid, token)
    }
}
