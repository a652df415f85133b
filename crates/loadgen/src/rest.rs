//! `rest`: `--concurrency` clients, each on its own keep-alive connection, doing
//! POST /api/sessions then POST /api/sessions/{id}/join as fast as answered, for `--duration`.

use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::http::{self, Client};
use crate::sys;
use crate::worker::{ready_then_start, sleep_until_ns, Env, Go};

/// A thread's part of a rest run.
pub async fn run(env: Rc<Env>, ready: mpsc::Sender<()>, go: Go) {
    let Some(t0) = ready_then_start(&env, ready, go).await else { return };
    let a = &env.args;
    let clock = env.clock;
    let end = t0 + (a.duration * 1e9) as u64;
    sleep_until_ns(&clock, t0).await;
    let mut tasks = Vec::new();
    for w in (env.gid..a.concurrency).step_by(env.groups) {
        let env = env.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let client = Client::new(env.args.urls[0].clone(), env.args.source_addrs, w);
            while env.clock.now_ns() < end && !sys::stopped() {
                if !create_and_join(&env, &client, false).await {
                    // Do not spin on a server that refuses.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    if sys::stopped() {
        env.stats.add("interrupted", 1);
    }
}

/// POST /api/sessions, POST join, and with `get` GET /api/sessions/{id}, each counted
/// (`create_ok`, `join_failed`, …, and a latency histogram per call); false at the first failure.
pub async fn create_and_join(env: &Env, client: &Client, get: bool) -> bool {
    let started = Instant::now();
    let session_id = match http::create_session(client).await {
        Ok(id) => {
            env.stats.add("create_ok", 1);
            env.stats.record("create", started.elapsed().as_micros() as i64);
            id
        }
        Err(e) => {
            env.stats.add("create_failed", 1);
            env.stats.fail(&e.detail);
            return false;
        }
    };
    let started = Instant::now();
    match http::join(client, &session_id, "rest-bench").await {
        Ok(_) => {
            env.stats.add("join_ok", 1);
            env.stats.record("join", started.elapsed().as_micros() as i64);
        }
        Err(e) => {
            env.stats.add("join_failed", 1);
            env.stats.fail(&e.detail);
            return false;
        }
    }
    if !get {
        return true;
    }
    let started = Instant::now();
    match http::get_session(client, &session_id).await {
        Ok(()) => {
            env.stats.add("get_ok", 1);
            env.stats.record("get", started.elapsed().as_micros() as i64);
            true
        }
        Err(e) => {
            env.stats.add("get_failed", 1);
            env.stats.fail(&e.detail);
            false
        }
    }
}
