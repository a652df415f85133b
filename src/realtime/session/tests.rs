//! The session actor without a WebSocket: sockets are outboxes, events come through the registry.

use actix::Addr;
use serde_json::{json, Value};

use super::super::fixture::{drain, receive, socket, Fixture, Got};
use super::super::messages::{JoinRefusal, LocationReported, SocketHandle};
use super::super::protocol::{ReplyTo, Vsn};
use super::SessionActor;
use crate::config::Limits;
use crate::db;
use crate::domain::{EndReason, LeaveReason, Location, Participant, Position, SessionId};
use crate::sessions::SessionEvent;

fn location_of(lat: f64) -> Position {
    let payload = json!({ "lat": lat, "lng": 2.5 });
    Location::parse(payload.as_object().unwrap_or(&serde_json::Map::new()), chrono::Utc::now())
        .map(Position::Clear)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

fn push_ref(n: u32) -> ReplyTo {
    ReplyTo { join_ref: json!("1"), msg_ref: json!(n.to_string()), topic: "t".into(), event: "location_update".into() }
}

/// Ana and Bo in one session, each with a socket in its channel (speaking `vsn`), nothing queued.
struct Two {
    sid: SessionId,
    ana: Participant,
    a: SocketHandle,
    b: SocketHandle,
    actor: Addr<SessionActor>,
}

async fn two_in_a_session(f: &Fixture, vsn: [Vsn; 2]) -> Two {
    let sid = f.session().await;
    let (ana, bo) = (f.participant(sid, "Ana").await, f.participant(sid, "Bo").await);
    let (a, b) = (socket(1, ana.id, vsn[0]), socket(2, bo.id, vsn[1]));
    let actor = f.join(sid, &a, "1").await.unwrap_or_else(|r| panic!("{r:?}"));
    f.join(sid, &b, "1").await.unwrap_or_else(|r| panic!("{r:?}"));
    drain(&a);
    drain(&b);
    Two { sid, ana, a, b, actor }
}

fn events(got: &[Got]) -> Vec<&str> {
    got.iter().map(|g| g.event().unwrap_or("(not a frame)")).collect()
}

#[actix_web::test]
async fn a_join_gets_the_snapshot_then_presence_and_the_others_hear_of_it() {
    let f = Fixture::new().await;
    let sid = f.session().await;
    let (ana, bo) = (f.participant(sid, "Ana").await, f.participant(sid, "Bo").await);
    let a = socket(1, ana.id, Vsn::V2);
    f.join(sid, &a, "1").await.unwrap_or_else(|r| panic!("{r:?}"));
    let got = drain(&a);
    assert_eq!(events(&got), vec!["phx_reply", "presence_state", "rate_advice"]);
    assert_eq!(got[2].payload(), &json!({"interval_ms": 15000, "watchers": 0}), "alone: nobody looks");
    assert_eq!(got[0].payload()["status"], "ok");
    let snapshot = &got[0].payload()["response"];
    assert_eq!((&snapshot["destination"], &snapshot["arrivals"]), (&Value::Null, &json!({})));
    assert_eq!(snapshot["participants"].as_array().map(Vec::len), Some(2), "{snapshot}");
    assert_eq!(snapshot["participants"][0]["display_name"], "Ana", "in joining order");
    assert_eq!(snapshot["locations"], json!([]));
    assert!(got[1].payload()[ana.id.to_string()]["metas"][0]["phx_ref"].is_string());

    let b = socket(2, bo.id, Vsn::V2);
    f.join(sid, &b, "7").await.unwrap_or_else(|r| panic!("{r:?}"));
    let diff = receive(&a, 1).await;
    assert_eq!(events(&diff), vec!["presence_diff"]);
    assert!(diff[0].payload()["joins"][bo.id.to_string()].is_object());
    let got = drain(&b);
    assert_eq!(got[0].event(), Some("phx_reply"));
    assert_eq!(got[1].payload().as_object().map(|m| m.len()), Some(2), "both online");
}

#[actix_web::test]
async fn locations_reach_the_others_in_order_within_the_rate_limit() {
    let limits = Limits { max_updates_per_second: 3, ..Limits::default() };
    let f = Fixture::with_limits(limits).await;
    let Two { ana, a, b, actor, .. } = two_in_a_session(&f, [Vsn::V2, Vsn::V1]).await;
    for n in 0..4 {
        let msg = LocationReported {
            socket: 1,
            participant: ana.id,
            position: location_of(f64::from(n)),
            reply: push_ref(n),
        };
        actor.send(msg).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let replies: Vec<String> = drain(&a).iter().map(|g| g.payload()["status"].to_string()).collect();
    assert_eq!(replies, vec!["\"ok\"", "\"ok\"", "\"ok\"", "\"error\""], "the fourth is over the bucket");
    let to_bo = drain(&b);
    let lats: Vec<f64> = to_bo
        .iter()
        .filter_map(|g| match g {
            Got::Frame(v) if v["event"] == "location_update" => v["payload"]["lat"].as_f64(),
            _ => None,
        })
        .collect();
    assert_eq!(lats, vec![0.0, 1.0, 2.0], "Bo gets Ana's accepted updates in order, in his framing");
    assert_eq!(f.metrics.rate_limited.get(), 1);
    assert_eq!(f.metrics.deliveries_out.get(), 3);
    // A socket that is not in the channel reports nothing.
    let stray = LocationReported { socket: 99, participant: ana.id, position: location_of(5.0), reply: push_ref(9) };
    actor.send(stray).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(drain(&b).is_empty());
}

#[actix_web::test]
async fn a_participant_who_leaves_is_told_and_its_sockets_close() {
    let f = Fixture::new().await;
    let Two { sid, ana, a, b, .. } = two_in_a_session(&f, [Vsn::V2, Vsn::V2]).await;
    // As the sessions context does it: recorded in SQL, then announced.
    let (user, reason) = (ana.id, LeaveReason::Removed);
    let removed = f.db.run(move |c| db::participants::remove(c, sid, user, reason, chrono::Utc::now())).await;
    assert!(removed.is_ok_and(|r| r));
    f.registry.do_send(SessionEvent::ParticipantLeft { session: sid, user, reason });
    let got = receive(&a, 3).await;
    assert_eq!(got[0].payload(), &json!({ "user_id": ana.id.to_string(), "reason": "removed" }));
    assert_eq!(got[1].event(), Some("phx_close"));
    assert_eq!(got[2], Got::Close(1000));
    let got = receive(&b, 2).await;
    assert_eq!(events(&got), vec!["participant_left", "presence_diff"]);
    assert!(got[1].payload()["leaves"][ana.id.to_string()].is_object());
    // Gone from the roster and from SQL: the same participant cannot join again.
    let again = socket(3, ana.id, Vsn::V2);
    assert_eq!(f.join(sid, &again, "2").await.err(), Some(JoinRefusal::NotAParticipant));
}

#[actix_web::test]
async fn an_ended_session_closes_its_channels_and_refuses_joins() {
    let f = Fixture::new().await;
    let Two { sid, ana, a: phoenix, b: plain, .. } = two_in_a_session(&f, [Vsn::V2, Vsn::Plain]).await;
    f.registry.do_send(SessionEvent::SessionEnded { session: sid, reason: EndReason::EndedByCreator });
    let got = receive(&phoenix, 3).await;
    assert_eq!(got[0].payload(), &json!({ "reason": "ended_by_creator" }));
    assert_eq!(got[1], Got::ChannelGone(json!("1")));
    assert_eq!(got[2].event(), Some("phx_close"));
    assert_eq!(got.len(), 3, "a Phoenix socket stays open: phoenix.js would only reconnect");
    let got = receive(&plain, 2).await;
    assert!(matches!(&got[0], Got::Frame(v) if v["type"] == "session_ended"));
    assert_eq!(got[1], Got::Close(1000));
    let late = socket(3, ana.id, Vsn::V2);
    assert_eq!(f.join(sid, &late, "2").await.err(), Some(JoinRefusal::SessionEnded));
}

#[actix_web::test]
async fn strangers_and_unknown_sessions_are_refused() {
    let f = Fixture::new().await;
    let (sid, other) = (f.session().await, f.session().await);
    let outsider = f.participant(other, "Cy").await;
    let s = socket(1, outsider.id, Vsn::V2);
    assert_eq!(f.join(sid, &s, "1").await.err(), Some(JoinRefusal::NotAParticipant));
    let nowhere = crate::domain::SessionId::new();
    assert_eq!(f.join(nowhere, &s, "1").await.err(), Some(JoinRefusal::SessionEnded), "purged or never was");
    assert!(drain(&s).is_empty(), "a refused join queues nothing");
}
