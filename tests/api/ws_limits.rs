//! The socket's limits (SPEC §3): frame size, unparsable frames, the idle timeout, and a reader
//! too slow to keep up.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::spawn_app_with;
use crate::ws_client::{loc, topic, WsClient, QUIET};

#[actix_rt::test]
async fn a_text_frame_over_max_frame_bytes_closes_the_socket_with_1009() {
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_FRAME_BYTES".into(), "1024".into());
    })
    .await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut b = WsClient::joined(&app, &people[1].token, &session.id).await;
    let join_ref = a.join_ref(&t).unwrap();

    // A frame of exactly the limit is fine.
    let exactly = sized(&json!([join_ref, "90", t, "location_update", {"lat": 1, "lng": 1}]), 1024);
    a.send_raw(&exactly).await;
    a.reply(&t, "location_update", "90").await.assert_ok("a frame of exactly MAX_FRAME_BYTES");
    b.next_event("location_update").await;

    // So is a fragmented message of exactly the limit.
    let whole = sized(&json!([join_ref, "92", t, "location_update", {"lat": 4, "lng": 4}]), 1024);
    send_fragmented(&mut a, &whole).await;
    a.reply(&t, "location_update", "92").await.assert_ok("a fragmented message of MAX_FRAME_BYTES");
    assert_eq!(b.next_event("location_update").await.payload["lat"], 4.0);

    let big = sized(&json!([join_ref, "91", t, "location_update", {"lat": 2, "lng": 2}]), 1025);
    a.send_raw(&big).await;
    assert_eq!(a.close_code().await, 1009, "a frame of {} bytes", big.len());
    assert!(!a.inbox().iter().any(|m| m.msg_ref == json!("91")), "the big frame got no reply");

    // The session and the other sockets go on.
    b.refute_push("location_update", QUIET).await;
    b.heartbeat().await.assert_ok("Bo's socket still works");
    let mut a2 = WsClient::joined(&app, &people[0].token, &session.id).await;
    a2.location(&t, loc(3.0, 3.0)).await.assert_ok("Ana reconnects");
    assert_eq!(b.next_event("location_update").await.payload["lat"], 3.0);
}

#[actix_rt::test]
async fn a_fragmented_message_over_max_frame_bytes_closes_the_socket_with_1009() {
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_FRAME_BYTES".into(), "1024".into());
    })
    .await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    let join_ref = a.join_ref(&t).unwrap();
    let whole = sized(&json!([join_ref, "93", t, "location_update", {"lat": 4, "lng": 4}]), 3_000);
    send_fragmented(&mut a, &whole).await;
    assert_eq!(a.close_code().await, 1009, "fragments adding up to {} bytes", whole.len());
}

/// `frame` (a JSON array whose last element is an object) padded with a `pad` field to `len` bytes.
fn sized(frame: &serde_json::Value, len: usize) -> String {
    let mut frame = frame.clone();
    let last = frame.as_array_mut().and_then(|a| a.last_mut()).and_then(|p| p.as_object_mut()).unwrap();
    last.insert("pad".into(), json!(""));
    let bare = frame.to_string().len();
    assert!(bare <= len, "{frame} is already over {len} bytes");
    let last = frame.as_array_mut().and_then(|a| a.last_mut()).and_then(|p| p.as_object_mut()).unwrap();
    last.insert("pad".into(), json!("x".repeat(len - bare)));
    let text = frame.to_string();
    assert_eq!(text.len(), len);
    text
}

/// Sends `text` as a text message in fragments of at most 400 bytes.
async fn send_fragmented(client: &mut WsClient, text: &str) {
    use actix_http::ws::Item;
    use awc::ws::Message;
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(400).collect();
    assert!(chunks.len() >= 3);
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let bytes = actix_web::web::Bytes::copy_from_slice(chunk);
        let item = match i {
            0 => Item::FirstText(bytes),
            i if i == last => Item::Last(bytes),
            _ => Item::Continue(bytes),
        };
        client.send_frame(Message::Continuation(item)).await;
    }
}

#[actix_rt::test]
async fn an_unparsable_frame_with_a_ref_gets_an_error_reply() {
    let app = spawn_app_with(|_| {}).await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let t = topic(&session.id);

    let mut a = WsClient::v2(&app, &people[0].token).await;
    for (frame, msg_ref, topic) in [
        (r#"[null,"9","phoenix"]"#.to_owned(), "9", "phoenix"),
        (format!(r#"["1","10","{t}",42,{{}}]"#), "10", t.as_str()),
        (r#"[null,"11","phoenix","heartbeat",{},"extra"]"#.to_owned(), "11", "phoenix"),
    ] {
        a.send_raw(&frame).await;
        let reply = a.reply(topic, "", msg_ref).await;
        assert_eq!(reply.status, "error", "{frame}: {}", reply.msg.raw);
        assert_eq!(reply.response, json!({"reason": "invalid_message"}), "{frame}: {}", reply.msg.raw);
    }
    a.heartbeat().await.assert_ok("still answering");

    let mut v1 = WsClient::v1(&app, &people[0].token).await;
    v1.send_raw(r#"{"ref":"7","topic":"phoenix","payload":{}}"#).await;
    let reply = v1.reply("phoenix", "", "7").await;
    assert_eq!(reply.status, "error", "V1 frame without event: {}", reply.msg.raw);
    v1.heartbeat().await.assert_ok("V1 still answering");
}

#[actix_rt::test]
async fn garbage_without_a_ref_is_ignored_and_counted() {
    let app = spawn_app_with(|_| {}).await;
    let (session, people) = app.session_with(&["Ana", "Bo", "Cy"]).await;
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut b = WsClient::joined(&app, &people[1].token, &session.id).await;
    let mut c = WsClient::plain(&app, &people[2].token).await;
    c.next_event("joined").await;
    let before = app.metric("location_sharing_unparsable_frames_total").await;

    let garbage = ["not json", "[]", "{}", "null", "42", r#""text""#, "[1,2", r#"{"topic":"phoenix"}"#];
    for text in garbage {
        a.send_raw(text).await;
    }
    a.send_frame(awc::ws::Message::Binary(actix_web::web::Bytes::from_static(b"\x00\x01binary"))).await;
    for text in ["not json", "[]", r#"{"data":{}}"#, r#"{"type":42}"#] {
        c.send_raw(text).await;
    }
    a.refute_push("phx_reply", QUIET).await;
    c.refute_push("reply", Duration::ZERO).await;

    // The sockets, the others and the session are untouched.
    a.heartbeat().await.assert_ok("heartbeat after garbage");
    a.location(&t, loc(1.0, 2.0)).await.assert_ok("location after garbage");
    assert_eq!(b.next_event("location_update").await.payload["lat"], 1.0);
    assert_eq!(c.next_event("location_update").await.payload["lat"], 1.0);
    c.location("", loc(3.0, 4.0)).await.assert_ok("plain location after garbage");
    assert_eq!(b.next_event("location_update").await.payload["lat"], 3.0);
    assert!(a.ended().is_none() && c.ended().is_none(), "nobody was closed");
    let after = app.metric("location_sharing_unparsable_frames_total").await;
    assert!(after - before >= 12.0, "every unparsable frame is counted: {before} → {after}");
}

#[actix_rt::test]
async fn a_silent_socket_is_closed_and_a_heartbeating_one_stays_open() {
    let app = spawn_app_with(|vars| {
        vars.insert("SOCKET_TIMEOUT_SECONDS".into(), "2".into());
    })
    .await;
    let (session, people) = app.session_with(&["Ana", "Bo", "Cy"]).await;
    let started = Instant::now();
    let mut silent = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut silent_plain = WsClient::plain(&app, &people[1].token).await;
    let mut beating = WsClient::joined(&app, &people[2].token, &session.id).await;
    let mut pinging = WsClient::v2(&app, &people[2].token).await;

    let silence = async {
        let code = silent.close_code_within(Duration::from_millis(4_500)).await;
        let elapsed = started.elapsed();
        let plain_code = silent_plain.close_code_within(Duration::from_millis(4_500).saturating_sub(elapsed)).await;
        (code, plain_code, elapsed)
    };
    let mut pings = 0;
    let heartbeats = async {
        let until = started + Duration::from_millis(4_000);
        while Instant::now() < until {
            pings += 1;
            beating.heartbeat().await.assert_ok("heartbeat");
            // Control frames count too.
            pinging.send_frame(awc::ws::Message::Ping(actix_web::web::Bytes::from_static(b"ping"))).await;
            pinging.drain_for(Duration::from_millis(500)).await;
        }
    };
    let ((code, plain_code, elapsed), ()) = futures_util::future::join(silence, heartbeats).await;
    assert_eq!(code, 1000, "the idle timeout closes with 1000");
    assert_eq!(plain_code, 1000, "a plain socket too");
    assert!(elapsed >= Duration::from_millis(1_500), "not before its timeout: closed after {elapsed:?}");
    beating.heartbeat().await.assert_ok("the heartbeating socket outlived the timeout");
    assert!(beating.ended().is_none());
    pinging.heartbeat().await.assert_ok("the socket sending ping control frames outlived the timeout");
    assert_eq!(pinging.pongs(), pings, "every ping got a pong");
}

#[actix_rt::test]
async fn a_slow_reader_drops_old_locations_without_slowing_the_others() {
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_SOCKET_QUEUE".into(), "50".into());
        vars.insert("MAX_UPDATES_PER_SECOND".into(), "1000000".into());
    })
    .await;
    let (session, people) = app.session_with(&["Ana", "Bo", "Cy"]).await;
    let t = topic(&session.id);
    let mut sender = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut reader = WsClient::joined(&app, &people[1].token, &session.id).await;
    let mut slow = WsClient::joined(&app, &people[2].token, &session.id).await;
    sender.stop_recording();
    reader.stop_recording();
    // From here on nobody reads `slow`: the server's writes to it back up.

    const BATCH: u32 = 40;
    const AT_LEAST: u32 = 20_000;
    const AT_MOST: u32 = 200_000;
    let started = Instant::now();
    let time_bound = Duration::from_secs(40);
    let mut sent = 0u32;
    let mut dropped = 0.0;
    let mut unanswered = Vec::new();
    while sent < AT_LEAST || dropped == 0.0 {
        assert!(
            sent < AT_MOST && started.elapsed() < time_bound,
            "no frame dropped after {sent} updates in {:?}",
            started.elapsed()
        );
        let payloads = (sent..sent + BATCH)
            .map(|i| {
                json!({"lat": 45.0, "lng": 7.0, "accuracy": f64::from(i % 100_000), "heading": 123.456,
                       "speed": f64::from(i), "timestamp": "2024-05-01T10:00:00.123456789Z"})
            })
            .collect();
        let refs = sender.send_pushes(&t, "location_update", payloads).await;
        // The other reader keeps up and gets every update, in order.
        for i in sent..sent + BATCH {
            let got = reader.next_event("location_update").await;
            assert_eq!(got.payload["speed"].as_f64(), Some(f64::from(i)), "the reader got update {i}");
        }
        // The previous batch's replies (one batch behind, so the sender never waits on them).
        for r in std::mem::replace(&mut unanswered, refs) {
            sender.reply(&t, "location_update", &r).await.assert_ok("accepted");
        }
        sent += BATCH;
        if sent.is_multiple_of(4_000) {
            app.assert_live("during the flood").await;
            dropped = app.metric("location_sharing_frames_dropped_total").await;
        }
    }
    for r in unanswered {
        sender.reply(&t, "location_update", &r).await.assert_ok("accepted");
    }
    eprintln!("slow reader: {dropped} frames dropped after {sent} updates in {:?}", started.elapsed());
    app.assert_live("after the flood").await;
    reader.heartbeat().await.assert_ok("the reader's socket is fine");

    // The slow reader, reading at last, finds a gapped but ordered stream ending with the newest.
    slow.stop_recording();
    let mut last: Option<f64> = None;
    let mut received = 0u32;
    let deadline = Instant::now() + Duration::from_secs(20);
    while last != Some(f64::from(sent - 1)) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let got = slow.next_event_within("location_update", remaining).await;
        let speed = got.payload["speed"].as_f64().unwrap();
        assert!(last.is_none_or(|l| speed > l), "in order: {speed} after {last:?}");
        last = Some(speed);
        received += 1;
    }
    assert!(received < sent, "the slow reader lost some ({received} of {sent})");
    slow.heartbeat().await.assert_ok("the slow reader's socket still works");
}
