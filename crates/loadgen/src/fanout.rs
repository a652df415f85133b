//! `fanout` and `idle`: sessions of participants, one socket each.
//!
//! Setup creates this thread's sessions over REST, joins their participants, and opens and joins
//! one socket per participant; each socket task then reads frames and heartbeats by itself. At
//! the start time a single ticker per thread wakes each socket when its next update is due (the
//! sockets' phases are evenly staggered over a period); the socket sends every update due by
//! then, stamped with its due time. Receivers count deliveries and their latency for updates due
//! in the measured window; senders count the deliveries expected (the other connected
//! participants of the session).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::args::Mode;
use crate::http::{self, source_addr, Client};
use crate::schedule::Schedule;
use crate::sys;
use crate::timefmt::{format_micros, parse_micros, wall_now_us};
use crate::worker::{sleep_precisely_until_ns, sleep_until_ns, wait_go, Env, Go};
use crate::ws::{self, classify, Frame, Ws};

/// The sessions of a run: `(session index, participants)`, and the sockets in all.
pub fn plan(mode: Mode, sessions: usize, participants: usize, sockets: usize, per_session: usize) -> Vec<usize> {
    match mode {
        Mode::Idle => {
            let per = per_session.max(1);
            (0..sockets.div_ceil(per)).map(|s| per.min(sockets - s * per)).collect()
        }
        _ => vec![participants; sessions],
    }
}

/// Which of `replicas` servers the socket of participant `j` (the global sender index) of session
/// `session` (its global index) connects to: with `affine`, the session's replica, the same for
/// all its participants (session index modulo the replicas, as an ingress hashing on the session
/// id would spread them); otherwise participants alternate, so every session spans the replicas.
pub fn replica_for(affine: bool, session: usize, j: usize, replicas: usize) -> usize {
    let n = replicas.max(1);
    if affine {
        session % n
    } else {
        j % n
    }
}

/// The timing of the run once it started: sends end at a clock reading (ns); the measured
/// window is in wall µs, the unit of the timestamps that carry due times.
#[derive(Debug, Clone, Copy)]
struct Run {
    sched: Option<Schedule>,
    send_end_ns: u64,
    measure_start_wall: i64,
    measure_end_wall: i64,
}

/// What the sockets of a thread share.
struct Shared {
    run: Cell<Option<Run>>,
    done: Cell<bool>,
}

/// One socket's fixed facts.
struct Me {
    /// Global sender index: the phase in the schedule and the source address.
    j: usize,
    topic: String,
    /// Participants of the session connected at setup.
    peers: Rc<Cell<u64>>,
    notify: Rc<Notify>,
}

struct Handle {
    j: usize,
    notify: Rc<Notify>,
    task: JoinHandle<()>,
}

/// A thread's part of a fanout or idle run.
pub async fn run(env: Rc<Env>, ready: mpsc::Sender<()>, go: Go) {
    let a = &env.args;
    let sizes = plan(a.mode, a.sessions, a.participants, a.sockets, a.per_session);
    let offsets: Vec<usize> = sizes.iter().scan(0, |acc, n| Some(std::mem::replace(acc, *acc + n))).collect();
    let total: usize = sizes.iter().sum();
    let shared = Rc::new(Shared { run: Cell::new(None), done: Cell::new(false) });
    let client = Rc::new(Client::new(a.urls[0].clone(), a.source_addrs, env.gid * 1009));
    let sem = Rc::new(Semaphore::new(a.setup_concurrency));

    let mut setups = Vec::new();
    for (s, &n) in sizes.iter().enumerate().filter(|(s, _)| s % env.groups == env.gid) {
        env.stats.add("connections_attempted", n as u64);
        let (env, client, sem, shared) = (env.clone(), client.clone(), sem.clone(), shared.clone());
        setups.push(tokio::task::spawn_local(setup_session(env, client, sem, shared, s, offsets[s], n)));
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
    let (measure_start_ns, sched) = match a.mode {
        Mode::Idle => (t0, None),
        _ => (t0 + secs(a.warmup), Some(Schedule::new(t0, a.rate, total))),
    };
    let measure_end_ns = measure_start_ns + secs(a.duration);
    let mut run = Run {
        sched,
        send_end_ns: measure_end_ns,
        measure_start_wall: clock.wall_us(measure_start_ns),
        measure_end_wall: clock.wall_us(measure_end_ns),
    };
    shared.run.set(Some(run));
    if let Some(sched) = sched {
        let mut entries: Vec<(u64, usize, Rc<Notify>)> =
            sockets.iter().map(|h| (sched.offset_ns(h.j), h.j, h.notify.clone())).collect();
        entries.sort_by_key(|e| e.0);
        let shared = shared.clone();
        tokio::task::spawn_local(async move { ticker(clock, sched, entries, shared).await });
    }

    sleep_until_ns(&clock, measure_end_ns).await;
    if sys::stopped() {
        // Ctrl-C: the window ends now; what is in flight still gets the drain time.
        let now = clock.now_ns().clamp(measure_start_ns, measure_end_ns);
        run.send_end_ns = now;
        run.measure_end_wall = clock.wall_us(now);
        shared.run.set(Some(run));
        env.stats.add("interrupted", 1);
    }
    env.stats.add("held", env.stats.open.get());
    if a.mode == Mode::Fanout {
        tokio::time::sleep(Duration::from_secs_f64(a.drain)).await;
    }
    finish(&env, &shared, sockets).await;
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

/// Wakes each socket when its next update is due: one timer per thread, entries in phase order.
async fn ticker(
    clock: crate::timefmt::Clock,
    sched: Schedule,
    entries: Vec<(u64, usize, Rc<Notify>)>,
    shared: Rc<Shared>,
) {
    if entries.is_empty() {
        return;
    }
    let timer = sys::PreciseTimer::new().ok();
    let mut k: u64 = 0;
    let mut idx = 0;
    loop {
        let Some(run) = shared.run.get() else { return };
        if shared.done.get() || sys::stopped() {
            return;
        }
        let (_, j, notify) = &entries[idx];
        let due = sched.due_ns(*j, k);
        if due >= run.send_end_ns {
            return;
        }
        if due > clock.now_ns() {
            sleep_precisely_until_ns(&clock, timer.as_ref(), due).await;
            continue; // re-check the run (it may have been cut short) before notifying
        }
        notify.notify_one();
        idx += 1;
        if idx == entries.len() {
            idx = 0;
            k += 1;
        }
    }
}

async fn setup_session(
    env: Rc<Env>,
    client: Rc<Client>,
    sem: Rc<Semaphore>,
    shared: Rc<Shared>,
    session: usize,
    first_j: usize,
    n: usize,
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
    let mut joined = Vec::with_capacity(n);
    for q in 0..n {
        if sys::stopped() {
            break;
        }
        match http::join(&client, &session_id, &format!("lg-{}", first_j + q)).await {
            Ok(p) => joined.push((first_j + q, p)),
            Err(e) => env.stats.fail(&e.detail),
        }
    }
    let peers = Rc::new(Cell::new(0u64));
    let mut handles = Vec::with_capacity(joined.len());
    for (j, p) in joined {
        if sys::stopped() {
            break;
        }
        let target = &a.urls[replica_for(a.affine, session, j, a.urls.len())];
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
        peers.set(peers.get() + 1);
        env.stats.open.set(env.stats.open.get() + 1);
        let notify = Rc::new(Notify::new());
        let me = Me { j, topic: topic.clone(), peers: peers.clone(), notify: notify.clone() };
        let task = tokio::task::spawn_local(socket_task(socket, me, env.clone(), shared.clone()));
        handles.push(Handle { j, notify, task });
    }
    handles
}

/// One socket: reads and counts frames, heartbeats, and sends its updates when woken.
async fn socket_task(mut ws: Ws, me: Me, env: Rc<Env>, shared: Rc<Shared>) {
    let stats = &env.stats;
    let clock = env.clock;
    let hb_period = Duration::from_secs_f64(env.args.heartbeat);
    let heartbeat = tokio::time::sleep(hb_period);
    tokio::pin!(heartbeat);
    let mut msg_ref: u64 = 1;
    let mut k: u64 = 0;
    let mut failed: Option<String> = None;
    // A small deterministic walk, so the positions are not all the same.
    let (lat0, lng0) = (37.0 + (me.j % 1000) as f64 * 0.001, -122.0 + (me.j / 1000 % 1000) as f64 * 0.001);
    'outer: loop {
        tokio::select! {
            biased;
            () = me.notify.notified() => {
                if shared.done.get() {
                    break;
                }
                let Some(run) = shared.run.get() else { continue };
                let Some(sched) = run.sched else { continue };
                let now = clock.now_ns();
                // Everything due by now (more than one if this thread fell behind), bounded.
                for _ in 0..10_000 {
                    let due = sched.due_ns(me.j, k);
                    if due > now || due >= run.send_end_ns {
                        break;
                    }
                    k += 1;
                    msg_ref += 1;
                    let step = (k % 100) as f64 * 0.0001;
                    // Receivers see the due time in wall µs: the window is judged on that same value.
                    let due_wall = clock.wall_us(due);
                    let frame = ws::location_frame(&me.topic, msg_ref, lat0 + step, lng0 + step, &format_micros(due_wall));
                    if let Err(e) = ws.send(Message::text(frame)).await {
                        failed = Some(format!("send_io: {e}"));
                        break 'outer;
                    }
                    if due_wall >= run.measure_start_wall && due_wall < run.measure_end_wall {
                        let peers = me.peers.get().saturating_sub(1);
                        stats.sent.set(stats.sent.get() + 1);
                        stats.expected.set(stats.expected.get() + peers);
                        stats.window_expected(due_wall, peers);
                    }
                }
            }
            m = ws.next() => match ws::read(m) {
                ws::Read::Text(t) => on_frame(&env, &shared, &t),
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

fn on_frame(env: &Env, shared: &Shared, text: &str) {
    let stats = &env.stats;
    match classify(text) {
        Frame::Location(Some(ts)) => match (parse_micros(ts), shared.run.get()) {
            (Some(due), Some(run)) if due >= run.measure_start_wall && due < run.measure_end_wall => {
                let latency = wall_now_us() - due;
                stats.received.set(stats.received.get() + 1);
                stats.latency.borrow_mut().record(latency);
                stats.window_received(due, latency);
            }
            (Some(_), _) => {}
            (None, _) => stats.add("bad_timestamps", 1),
        },
        Frame::Location(None) => stats.add("bad_timestamps", 1),
        Frame::ReplyOk => stats.replies_ok.set(stats.replies_ok.get() + 1),
        Frame::ReplyError(reason) => {
            stats.replies_error.set(stats.replies_error.get() + 1);
            stats.fail(&format!("reply_{}: {}", reason.unwrap_or("error"), &text[..text.len().min(200)]));
        }
        Frame::Close => stats.add("phx_close", 1),
        Frame::Other => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_sessions() {
        assert_eq!(plan(Mode::Fanout, 3, 50, 0, 0), vec![50, 50, 50]);
        assert_eq!(plan(Mode::Idle, 0, 0, 120, 50), vec![50, 50, 20]);
        assert_eq!(plan(Mode::Idle, 0, 0, 100, 50), vec![50, 50]);
        assert_eq!(plan(Mode::Idle, 0, 0, 1, 50), vec![1]);
    }

    /// The replica of every socket of a run, as `run` and `setup_session` pick them.
    fn replicas_of(affine: bool, sessions: usize, participants: usize, replicas: usize) -> Vec<Vec<usize>> {
        let sizes = plan(Mode::Fanout, sessions, participants, 0, 0);
        let mut first_j = 0;
        let mut out = Vec::new();
        for (s, &n) in sizes.iter().enumerate() {
            out.push((first_j..first_j + n).map(|j| replica_for(affine, s, j, replicas)).collect());
            first_j += n;
        }
        out
    }

    #[test]
    fn spread_alternates_participants_over_the_replicas() {
        let r = replicas_of(false, 3, 4, 2);
        assert_eq!(r, vec![vec![0, 1, 0, 1], vec![0, 1, 0, 1], vec![0, 1, 0, 1]]);
        // Odd sessions: the alternation runs on over the global index.
        assert_eq!(replicas_of(false, 2, 3, 2), vec![vec![0, 1, 0], vec![1, 0, 1]]);
        assert_eq!(replicas_of(false, 1, 5, 3), vec![vec![0, 1, 2, 0, 1]]);
    }

    #[test]
    fn affine_puts_each_session_on_one_replica() {
        let r = replicas_of(true, 5, 50, 2);
        for (s, sockets) in r.iter().enumerate() {
            assert_eq!(sockets.len(), 50);
            assert!(sockets.iter().all(|&t| t == s % 2), "session {s}: {sockets:?}");
        }
        // Sessions are spread evenly: 20 sessions over 2 replicas, 10 each; over 3, 7/7/6.
        let count = |r: &[Vec<usize>], t: usize| r.iter().filter(|s| s[0] == t).count();
        let r = replicas_of(true, 20, 50, 2);
        assert_eq!((count(&r, 0), count(&r, 1)), (10, 10));
        let r = replicas_of(true, 20, 50, 3);
        assert_eq!((count(&r, 0), count(&r, 1), count(&r, 2)), (7, 7, 6));
    }

    #[test]
    fn one_replica_takes_everything() {
        for affine in [false, true] {
            assert!(replicas_of(affine, 4, 7, 1).iter().flatten().all(|&t| t == 0));
            assert_eq!(replica_for(affine, 3, 9, 0), 0, "no replicas is taken as one");
        }
    }
}
