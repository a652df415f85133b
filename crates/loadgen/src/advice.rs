//! `advice`: sessions whose clients honour `rate_advice` (SPEC §8) while a few of them look at
//! the map — how many updates does a session send, and how many deliveries does it cause?
//!
//! Setup creates this thread's sessions, joins their participants, opens and joins one socket
//! each and sends `viewing` right away (`--viewers` of each session true, the rest false); each
//! socket task then reads frames, takes every `rate_advice` into its [`Pacer`] and heartbeats.
//! From the start time each socket sends on its own timer, when its pacer says an update is due
//! (with `--ignore-advice`, at `--rate` whatever it is told). Updates and deliveries are counted
//! by the `--sample-every` interval of the measured window their update was due in; at the end
//! of each interval a sampler counts this thread's clients advised fast, idle, or not yet. Every
//! interval's figures go into the report as counters (`interval.K.NAME`), so they add up over
//! threads and processes like the rest.

pub mod pacer;
pub mod report;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::http::{self, source_addr, Client};
use crate::sys;
use crate::timefmt::{format_micros, parse_micros, wall_now_us};
use crate::worker::{sleep_until_ns, wait_go, Env, Go};
use crate::ws::{self, classify, Frame, Ws};
use pacer::{Class, Glance, Pacer};

/// The run once started: sending starts at `t0_ns` and ends at `send_end_ns` (clock ns); the
/// measured window is in wall µs, the unit of the timestamps the updates carry.
#[derive(Debug, Clone, Copy)]
struct Run {
    t0_ns: u64,
    send_end_ns: u64,
    measure_start_wall: i64,
    measure_end_wall: i64,
    every_us: i64,
}

impl Run {
    /// The interval of a due time in the measured window.
    fn interval(&self, wall: i64) -> Option<u64> {
        if wall < self.measure_start_wall || wall >= self.measure_end_wall {
            return None;
        }
        u64::try_from((wall - self.measure_start_wall) / self.every_us).ok()
    }
}

/// One interval's figures on this thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interval {
    /// Updates due (and sent) in it.
    pub sent: u64,
    /// Deliveries expected of them.
    pub expected: u64,
    /// Of those, received.
    pub received: u64,
    /// `rate_advice` pushes received in it.
    pub pushes: u64,
    /// Clients advised fast at its end.
    pub fast: u64,
    /// Advised idle.
    pub idle: u64,
    /// Not advised yet.
    pub unadvised: u64,
}

impl Interval {
    /// The figures by name, as the report's counters carry them.
    pub const NAMES: [&'static str; 7] = ["sent", "expected", "received", "pushes", "fast", "idle", "unadvised"];

    fn values(&self) -> [u64; 7] {
        [self.sent, self.expected, self.received, self.pushes, self.fast, self.idle, self.unadvised]
    }
}

/// The counter of interval `k`'s figure `name`.
pub fn interval_key(k: u64, name: &str) -> String {
    format!("interval.{k:05}.{name}")
}

/// What the sockets of a thread share.
#[derive(Default)]
struct Shared {
    run: Cell<Option<Run>>,
    done: Cell<bool>,
    intervals: RefCell<BTreeMap<u64, Interval>>,
}

impl Shared {
    fn count(&self, wall: i64, f: impl FnOnce(&mut Interval)) {
        if let Some(k) = self.run.get().and_then(|r| r.interval(wall)) {
            f(self.intervals.borrow_mut().entry(k).or_default());
        }
    }
}

/// One socket's fixed facts.
struct Me {
    j: usize,
    topic: String,
    /// Participants of the session connected at setup.
    peers: Rc<Cell<u64>>,
    notify: Rc<Notify>,
    class: Rc<Cell<Class>>,
    /// A glancing viewer's first look after the start, and the look and period, ns.
    glance: Option<(u64, u64, u64)>,
}

struct Handle {
    notify: Rc<Notify>,
    class: Rc<Cell<Class>>,
    task: JoinHandle<()>,
}

/// A thread's part of an advice run.
pub async fn run(env: Rc<Env>, ready: mpsc::Sender<()>, go: Go) {
    let a = &env.args;
    let shared = Rc::new(Shared::default());
    let client = Rc::new(Client::new(a.urls[0].clone(), a.source_addrs, env.gid * 1009));
    let sem = Rc::new(Semaphore::new(a.setup_concurrency));
    let mut setups = Vec::new();
    for s in (env.gid..a.sessions).step_by(env.groups) {
        env.stats.add("connections_attempted", a.participants as u64);
        let (env, client, sem, shared) = (env.clone(), client.clone(), sem.clone(), shared.clone());
        setups.push(tokio::task::spawn_local(setup_session(env, client, sem, shared, s)));
    }
    let mut sockets: Vec<Handle> = Vec::new();
    for s in setups {
        if let Ok(mut h) = s.await {
            sockets.append(&mut h);
        }
    }
    env.stats.add("connections_ok", sockets.len() as u64);
    let _ = ready.send(());

    let Some(t0_wall) = wait_go(go).await else {
        finish(&env, &shared, sockets).await;
        return;
    };
    let clock = env.clock;
    let t0 = clock.ns_of_wall_us(t0_wall);
    let secs = |s: f64| (s * 1e9) as u64;
    let measure_start = t0 + secs(a.warmup);
    let measure_end = measure_start + secs(a.duration);
    let every_us = ((a.advice.sample_every * 1e6) as i64).max(1);
    let run = Run {
        t0_ns: t0,
        send_end_ns: measure_end,
        measure_start_wall: clock.wall_us(measure_start),
        measure_end_wall: clock.wall_us(measure_end),
        every_us,
    };
    shared.run.set(Some(run));
    for h in &sockets {
        h.notify.notify_one();
    }
    // The sampler: at the end of each interval, how this thread's clients are advised.
    let every_ns = every_us as u64 * 1000;
    for k in 0u64.. {
        let at = (measure_start + (k + 1) * every_ns).min(measure_end);
        sleep_until_ns(&clock, at).await;
        if sys::stopped() {
            env.stats.add("interrupted", 1);
            break;
        }
        let mut intervals = shared.intervals.borrow_mut();
        let i = intervals.entry(k).or_default();
        for h in &sockets {
            match h.class.get() {
                Class::Fast => i.fast += 1,
                Class::Idle => i.idle += 1,
                Class::Unadvised => i.unadvised += 1,
            }
        }
        if at >= measure_end {
            break;
        }
    }
    env.stats.add("held", env.stats.open.get());
    if !sys::stopped() {
        tokio::time::sleep(Duration::from_secs_f64(a.drain)).await;
    }
    finish(&env, &shared, sockets).await;
    let mut nested = env.stats.nested.borrow_mut();
    for (k, i) in shared.intervals.borrow().iter() {
        for (name, v) in Interval::NAMES.iter().zip(i.values()) {
            *nested.counters.entry(interval_key(*k, name)).or_default() += v;
        }
    }
}

/// Ends every socket task and waits for them (bounded).
async fn finish(env: &Env, shared: &Shared, sockets: Vec<Handle>) {
    shared.done.set(true);
    for h in &sockets {
        h.notify.notify_one();
    }
    let all = async {
        for h in sockets {
            let _ = h.task.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), all).await.is_err() {
        env.stats.fail("shutdown_timeout: socket tasks did not end within 10 s");
    }
}

async fn setup_session(
    env: Rc<Env>,
    client: Rc<Client>,
    sem: Rc<Semaphore>,
    shared: Rc<Shared>,
    s: usize,
) -> Vec<Handle> {
    let Ok(_permit) = sem.acquire().await else { return Vec::new() };
    if sys::stopped() {
        return Vec::new();
    }
    let a = &env.args;
    let session_id = match http::create_session(&client).await {
        Ok(id) => id,
        Err(e) => {
            env.stats.fail(&e.detail);
            return Vec::new();
        }
    };
    let topic = format!("location:{session_id}");
    let first_j = s * a.participants;
    let mut joined = Vec::with_capacity(a.participants);
    for q in 0..a.participants {
        if sys::stopped() {
            break;
        }
        match http::join(&client, &session_id, &format!("lg-{}", first_j + q)).await {
            Ok(p) => joined.push((q, p)),
            Err(e) => env.stats.fail(&e.detail),
        }
    }
    let peers = Rc::new(Cell::new(0u64));
    let mut handles = Vec::with_capacity(joined.len());
    for (q, p) in joined {
        if sys::stopped() {
            break;
        }
        let j = first_j + q;
        let target = &a.urls[j % a.urls.len()];
        let mut socket = match ws::connect(target, source_addr(target, a.source_addrs, j), &p.token).await {
            Ok(s) => s,
            Err(e) => {
                env.stats.fail(&e);
                continue;
            }
        };
        if let Err(e) = ws::phx_join(&mut socket, &topic).await {
            env.stats.fail(&e);
            continue;
        }
        // A glancing viewer starts not looking; its looks are staggered over the period.
        let viewer = q < a.advice.viewers;
        let visible = viewer && a.advice.glance.is_none();
        let glance = a.advice.glance.filter(|_| viewer).map(|(on, off)| {
            let period = ((on + off) * 1e9) as u64;
            (period / a.advice.viewers as u64 * q as u64, (on * 1e9) as u64, period)
        });
        if let Err(e) = socket.send(Message::text(ws::viewing_frame(&topic, 2, visible))).await {
            env.stats.fail(&format!("send_io: {e}"));
            continue;
        }
        env.stats.add(if visible { "viewing_true" } else { "viewing_false" }, 1);
        peers.set(peers.get() + 1);
        env.stats.open.set(env.stats.open.get() + 1);
        let (notify, class) = (Rc::new(Notify::new()), Rc::new(Cell::new(Class::Unadvised)));
        // Phases evenly staggered over a period, across the whole run's clients.
        let phase = j as f64 / (a.sessions * a.participants) as f64;
        let pacer = Pacer::new(a.rate, phase, !a.advice.ignore_advice);
        let me =
            Me { j, topic: topic.clone(), peers: peers.clone(), notify: notify.clone(), class: class.clone(), glance };
        let task = tokio::task::spawn_local(socket_task(socket, me, pacer, env.clone(), shared.clone()));
        handles.push(Handle { notify, class, task });
    }
    handles
}

/// Sleeps until a clock reading, or for ever when there is none.
async fn sleep_until_opt(env: &Env, ns: Option<u64>) {
    match ns {
        Some(ns) => tokio::time::sleep_until(tokio::time::Instant::from_std(env.clock.instant(ns))).await,
        None => std::future::pending().await,
    }
}

/// One socket: reads frames and takes the advice, heartbeats, sends when its pacer says so.
async fn socket_task(mut ws: Ws, me: Me, mut pacer: Pacer, env: Rc<Env>, shared: Rc<Shared>) {
    let stats = &env.stats;
    let clock = env.clock;
    let hb_period = Duration::from_secs_f64(env.args.heartbeat);
    let heartbeat = tokio::time::sleep(hb_period);
    tokio::pin!(heartbeat);
    let mut msg_ref: u64 = 2;
    let mut k: u64 = 0;
    let mut failed: Option<String> = None;
    let mut looking = false;
    let (lat0, lng0) = (37.0 + (me.j % 1000) as f64 * 0.001, -122.0 + (me.j / 1000 % 1000) as f64 * 0.001);
    loop {
        let run = shared.run.get();
        let due = run.and_then(|r| pacer.next_ns().filter(|d| *d < r.send_end_ns));
        let glance = run.zip(me.glance).map(|(r, (offset_ns, on_ns, period_ns))| Glance {
            t0_ns: r.t0_ns,
            offset_ns,
            on_ns,
            period_ns,
        });
        let now = clock.now_ns();
        // Due now when the viewer should be looking and is not (or the other way round).
        let toggle = glance.filter(|_| run.is_some_and(|r| now < r.send_end_ns)).map(|g| match g.at(now) {
            (want, _) if want != looking => now,
            (_, next) => next,
        });
        tokio::select! {
            biased;
            () = me.notify.notified() => {
                if shared.done.get() {
                    break;
                }
                // Read afresh: `run` is what it was when this turn of the loop began.
                if let Some(r) = shared.run.get() {
                    pacer.start(r.t0_ns);
                }
            }
            () = sleep_until_opt(&env, due) => {
                let (Some(due), Some(run)) = (due, run) else { continue };
                k += 1;
                msg_ref += 1;
                let step = (k % 100) as f64 * 0.0001;
                let due_wall = clock.wall_us(due);
                let frame = ws::location_frame(&me.topic, msg_ref, lat0 + step, lng0 + step, &format_micros(due_wall));
                if let Err(e) = ws.send(Message::text(frame)).await {
                    failed = Some(format!("send_io: {e}"));
                    break;
                }
                pacer.sent(due, clock.now_ns());
                if run.interval(due_wall).is_some() {
                    let peers = me.peers.get().saturating_sub(1);
                    stats.sent.set(stats.sent.get() + 1);
                    stats.expected.set(stats.expected.get() + peers);
                    shared.count(due_wall, |i| {
                        i.sent += 1;
                        i.expected += peers;
                    });
                }
            }
            () = sleep_until_opt(&env, toggle) => {
                let (Some(g), Some(r)) = (glance, run) else { continue };
                let now = clock.now_ns();
                if now >= r.send_end_ns {
                    continue;
                }
                let (want, _) = g.at(now);
                if want != looking {
                    looking = want;
                    msg_ref += 1;
                    if let Err(e) = ws.send(Message::text(ws::viewing_frame(&me.topic, msg_ref, want))).await {
                        failed = Some(format!("send_io: {e}"));
                        break;
                    }
                    if want {
                        stats.add("glances", 1);
                    }
                }
            }
            m = ws.next() => match ws::read(m) {
                ws::Read::Text(t) => on_frame(&env, &shared, &me, &mut pacer, &t),
                ws::Read::Gone(reason) => {
                    failed = Some(reason);
                    break;
                }
                ws::Read::Other => {}
            },
            () = &mut heartbeat => {
                msg_ref += 1;
                if let Err(e) = ws.send(Message::text(ws::heartbeat_frame(msg_ref))).await {
                    failed = Some(format!("send_io: {e}"));
                    break;
                }
                heartbeat.as_mut().reset(tokio::time::Instant::now() + hb_period);
            }
        }
    }
    ws::end(&mut ws, failed, stats, shared.done.get()).await;
}

fn on_frame(env: &Env, shared: &Shared, me: &Me, pacer: &mut Pacer, text: &str) {
    let stats = &env.stats;
    match classify(text) {
        Frame::Location(Some(ts)) => match parse_micros(ts) {
            Some(due) => {
                if shared.run.get().and_then(|r| r.interval(due)).is_some() {
                    let latency = wall_now_us() - due;
                    stats.received.set(stats.received.get() + 1);
                    stats.latency.borrow_mut().record(latency);
                    shared.count(due, |i| i.received += 1);
                }
            }
            None => stats.add("bad_timestamps", 1),
        },
        Frame::Location(None) => stats.add("bad_timestamps", 1),
        Frame::ReplyOk => stats.replies_ok.set(stats.replies_ok.get() + 1),
        Frame::ReplyError(reason) => {
            stats.replies_error.set(stats.replies_error.get() + 1);
            stats.fail(&format!("reply_{}: {}", reason.unwrap_or("error"), &text[..text.len().min(200)]));
        }
        Frame::Close => stats.add("phx_close", 1),
        Frame::Other => {
            let Some((interval_ms, watchers)) = ws::rate_advice(text) else { return };
            stats.add("advice_pushes", 1);
            if pacer.advised_ms() != Some(interval_ms) {
                stats.add("advice_changes", 1);
            }
            // Pushes by value, exactly (a histogram would round 15000 to its bucket).
            let mut nested = stats.nested.borrow_mut();
            *nested.counters.entry(format!("advice.interval_ms.{interval_ms}")).or_default() += 1;
            *nested.counters.entry(format!("advice.watchers.{watchers}")).or_default() += 1;
            drop(nested);
            pacer.advise(interval_ms);
            me.class.set(pacer.class());
            shared.count(wall_now_us(), |i| i.pushes += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_of_the_measured_window() {
        let r = Run { t0_ns: 0, send_end_ns: 0, measure_start_wall: 1_000, measure_end_wall: 1_250, every_us: 100 };
        let got: Vec<Option<u64>> = [999, 1_000, 1_099, 1_100, 1_249, 1_250].iter().map(|w| r.interval(*w)).collect();
        assert_eq!(got, [None, Some(0), Some(0), Some(1), Some(2), None]);
        assert_eq!(interval_key(7, "sent"), "interval.00007.sent");
        let i = Interval { sent: 1, fast: 2, unadvised: 3, ..Interval::default() };
        assert_eq!(i.values(), [1, 0, 0, 0, 2, 0, 3]);
    }
}
