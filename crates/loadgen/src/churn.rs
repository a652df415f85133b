//! `churn`: cycles started on a fixed schedule (cycle `c` at `t0 + c / rate`, spread over all
//! threads): create-or-reuse a session → join over REST → connect → phx_join → leave (REST
//! DELETE with the participant's own token) → close. A cycle's latency counts from when it was
//! due; a cycle that cannot start because too many are in flight counts as failed (`overload`).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::http::{self, source_addr, Client};
use crate::schedule::cycle_due_ns;
use crate::sys;
use crate::worker::{ready_then_start, sleep_precisely_until_ns, Env, Go};
use crate::ws;

/// How long one cycle may take.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(30);

type SessionSlot = Rc<OnceCell<Result<String, String>>>;

/// A thread's part of a churn run.
pub async fn run(env: Rc<Env>, ready: mpsc::Sender<()>, go: Go) {
    let Some(t0) = ready_then_start(&env, ready, go).await else { return };
    let a = &env.args;
    let clock = env.clock;
    let total = (a.rate * a.duration).ceil() as u64;
    let client = Rc::new(Client::new(a.urls[0].clone(), a.source_addrs, env.gid * 7919));
    let in_flight = Rc::new(Cell::new(0usize));
    // Each cycle holds one socket and at most one REST connection.
    let max_in_flight = ((a.rate * 5.0) as usize).clamp(64, 8192).div_ceil(env.groups).max(16);
    let mut local: u64 = 0;
    let mut slot: (u64, SessionSlot) = (u64::MAX, Rc::new(OnceCell::new()));
    let timer = sys::PreciseTimer::new().ok();
    for c in (env.gid as u64..total).step_by(env.groups) {
        let due = cycle_due_ns(t0, a.rate, c);
        if due > clock.now_ns() {
            sleep_precisely_until_ns(&clock, timer.as_ref(), due).await;
        }
        if sys::stopped() {
            env.stats.add("interrupted", 1);
            break;
        }
        env.stats.add("cycles_attempted", 1);
        if in_flight.get() >= max_in_flight {
            env.stats.add("cycles_failed", 1);
            env.stats.fail("overload: too many cycles in flight, cycle not started");
            continue;
        }
        let group = local / a.reuse as u64;
        local += 1;
        if slot.0 != group {
            slot = (group, Rc::new(OnceCell::new()));
        }
        in_flight.set(in_flight.get() + 1);
        let (env, client, session, in_flight) = (env.clone(), client.clone(), slot.1.clone(), in_flight.clone());
        tokio::task::spawn_local(async move {
            let outcome = tokio::time::timeout(CYCLE_TIMEOUT, cycle(&env, &client, &session, c)).await;
            let latency_us = (env.clock.now_ns().saturating_sub(due) / 1000) as i64;
            match outcome {
                Ok(Ok(())) => {
                    env.stats.add("cycles_ok", 1);
                    env.stats.latency.borrow_mut().record(latency_us);
                }
                Ok(Err(e)) => {
                    env.stats.add("cycles_failed", 1);
                    env.stats.fail(&e);
                }
                Err(_) => {
                    env.stats.add("cycles_failed", 1);
                    env.stats.fail("cycle_timeout: a cycle took over 30 s");
                }
            }
            in_flight.set(in_flight.get() - 1);
        });
    }
    // Let the cycles in flight end (each is bounded by its timeout).
    let deadline = tokio::time::Instant::now() + CYCLE_TIMEOUT + Duration::from_secs(1);
    while in_flight.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn cycle(env: &Env, client: &Client, session: &SessionSlot, c: u64) -> Result<(), String> {
    let a = &env.args;
    let stats = &env.stats;
    let mut t = Instant::now();
    let mut step = |name: &'static str| {
        stats.record(name, t.elapsed().as_micros() as i64);
        t = Instant::now();
    };
    let session_id =
        session.get_or_init(|| async { http::create_session(client).await.map_err(|e| e.detail) }).await.clone()?;
    step("step_session");
    let joined = http::join(client, &session_id, &format!("churn-{c}")).await.map_err(|e| e.detail)?;
    step("step_join");
    let target = &a.urls[c as usize % a.urls.len()];
    let mut socket = ws::connect(target, source_addr(target, a.source_addrs, c as usize), &joined.token).await?;
    step("step_connect");
    ws::phx_join(&mut socket, &format!("location:{session_id}")).await?;
    step("step_phx_join");
    http::leave(client, &session_id, &joined).await.map_err(|e| e.detail)?;
    step("step_leave");
    // The server answers a leave with participant_left, phx_close and a close frame: read them,
    // then close our side, so neither end resets the connection.
    let drain = async {
        while let Some(Ok(m)) = socket.next().await {
            if m.is_close() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    let _ = tokio::time::timeout(Duration::from_millis(500), socket.close(None)).await;
    step("step_close");
    Ok(())
}
