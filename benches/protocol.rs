//! Micro-benchmarks of the hot path of a location update: decoding the client's frame, checking
//! the location, encoding the broadcast and the reply, and the outbox each recipient's frame goes
//! through. `cargo bench --bench protocol`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bytestring::ByteString;
use chrono::Utc;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use location_sharing::domain::{Location, ParticipantId};
use location_sharing::realtime::outbox::{Outbox, Outgoing};
use location_sharing::realtime::protocol::{decode, encode_push, encode_reply, ReplyTo, Status, Vsn};
use prometheus::IntCounter;
use serde_json::{json, Value};

const TOPIC: &str = "location:0b7e4f0e-5d6c-4b8a-9f2e-3c1d2a4b5c6d";

const V2_FRAME: &str = r#"["1","42","location:0b7e4f0e-5d6c-4b8a-9f2e-3c1d2a4b5c6d","location_update",{"lat":37.774929,"lng":-122.419416,"accuracy":5.0,"heading":90.0,"speed":1.4,"timestamp":"2020-01-01T00:00:00.123456Z"}]"#;
const V1_FRAME: &str = r#"{"join_ref":"1","ref":"42","topic":"location:0b7e4f0e-5d6c-4b8a-9f2e-3c1d2a4b5c6d","event":"location_update","payload":{"lat":37.774929,"lng":-122.419416,"accuracy":5.0,"heading":90.0,"speed":1.4,"timestamp":"2020-01-01T00:00:00.123456Z"}}"#;
const PLAIN_FRAME: &str = r#"{"type":"location_update","data":{"lat":37.774929,"lng":-122.419416,"accuracy":5.0,"heading":90.0,"speed":1.4,"timestamp":"2020-01-01T00:00:00.123456Z"}}"#;

fn counter() -> IntCounter {
    IntCounter::new("bench_dropped", "dropped").expect("a counter")
}

fn location() -> Location {
    let payload = json!({"lat": 37.774929, "lng": -122.419416, "accuracy": 5.0, "heading": 90.0, "speed": 1.4,
                         "timestamp": "2020-01-01T00:00:00.123456Z"});
    Location::parse(payload.as_object().expect("an object"), Utc::now()).expect("a valid location")
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, vsn, text) in [("v2", Vsn::V2, V2_FRAME), ("v1", Vsn::V1, V1_FRAME), ("plain", Vsn::Plain, PLAIN_FRAME)]
    {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| b.iter(|| decode(vsn, black_box(text), TOPIC)));
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let view = location().view(ParticipantId::new());
    let frame = decode(Vsn::V2, V2_FRAME, TOPIC).expect("a frame");
    let reply_to = ReplyTo::from(&frame);
    let empty = json!({});
    let mut g = c.benchmark_group("encode");
    for (name, vsn) in [("v2", Vsn::V2), ("v1", Vsn::V1), ("plain", Vsn::Plain)] {
        g.bench_function(format!("push_location_{name}"), |b| {
            b.iter(|| encode_push(vsn, &Value::Null, TOPIC, "location_update", black_box(&view)))
        });
        g.bench_function(format!("reply_ok_{name}"), |b| {
            b.iter(|| encode_reply(vsn, black_box(&reply_to), Status::Ok, &empty))
        });
    }
    g.finish();
}

fn bench_location_parse(c: &mut Criterion) {
    let frame = decode(Vsn::V2, V2_FRAME, TOPIC).expect("a frame");
    let payload = frame.payload.as_object().cloned().expect("an object");
    let minimal = json!({"lat": 1.5, "lng": 2.5});
    let minimal = minimal.as_object().expect("an object");
    let now = Utc::now();
    let mut g = c.benchmark_group("location_parse");
    g.bench_function("full", |b| b.iter(|| Location::parse(black_box(&payload), now)));
    g.bench_function("minimal", |b| b.iter(|| Location::parse(black_box(minimal), now)));
    g.finish();
}

/// What a socket does with its outbox: takes every queued item.
fn drain(o: &Outbox) {
    while let Some(item) = o.pop() {
        black_box(item);
    }
}

fn bench_outbox(c: &mut Criterion) {
    let text = encode_push(Vsn::V2, &Value::Null, TOPIC, "location_update", &location().view(ParticipantId::new()));
    let mut g = c.benchmark_group("outbox");
    let outbox = Outbox::new(1000, counter());
    let drain = |o: &Outbox| {
        while let Some(item) = o.pop() {
            black_box(item);
        }
    };
    g.bench_function("push_drain_1", |b| {
        b.iter(|| {
            outbox.push(Outgoing::Frame { text: text.clone(), droppable: true });
            drain(&outbox)
        })
    });
    g.bench_function("push_100_drain", |b| {
        b.iter(|| {
            for _ in 0..100 {
                outbox.push(Outgoing::Frame { text: text.clone(), droppable: true });
            }
            drain(&outbox)
        })
    });
    // A full queue: every push drops the oldest droppable frame.
    let full = Outbox::new(1000, counter());
    for _ in 0..1000 {
        full.push(Outgoing::Frame { text: text.clone(), droppable: true });
    }
    g.bench_function("push_when_full", |b| {
        b.iter(|| full.push(Outgoing::Frame { text: black_box(text.clone()), droppable: true }))
    });
    g.finish();
}

/// The session's fan-out as far as the public API goes: encode the broadcast once, push the same
/// bytes to 49 other recipients' outboxes, and each socket drains its own.
fn bench_fanout(c: &mut Criterion) {
    let loc = location();
    let sender = ParticipantId::new();
    let outboxes: Vec<Outbox> = (0..49).map(|_| Outbox::new(1000, counter())).collect();
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements(outboxes.len() as u64));
    g.bench_function("encode_once_push_49_drain", |b| {
        b.iter(|| {
            let text: ByteString = encode_push(Vsn::V2, &Value::Null, TOPIC, "location_update", &loc.view(sender));
            for o in &outboxes {
                o.push(Outgoing::Frame { text: text.clone(), droppable: true });
            }
            for o in &outboxes {
                drain(o);
            }
        })
    });
    g.bench_function("decode_parse_encode_push_49", |b| {
        b.iter_batched(
            || V2_FRAME,
            |raw| {
                let frame = decode(Vsn::V2, raw, TOPIC).expect("a frame");
                let payload = frame.payload.as_object().expect("an object");
                let loc = Location::parse(payload, Utc::now()).expect("a location");
                let text = encode_push(Vsn::V2, &Value::Null, &frame.topic, "location_update", &loc.view(sender));
                for o in &outboxes {
                    o.push(Outgoing::Frame { text: text.clone(), droppable: true });
                }
                for o in &outboxes {
                    drain(o);
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_encode, bench_location_parse, bench_outbox, bench_fanout);
criterion_main!(benches);
