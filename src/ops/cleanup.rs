//! When the cleanup sweep runs: every `CLEANUP_INTERVAL_SECONDS`, and once soon after start to
//! catch what happened while no replica ran. What it does is the sessions context's
//! [`Sessions::sweep`].

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::sessions::{Report, Sessions};
use crate::telemetry::Chain;

/// The actor that runs the sweep, one at a time.
pub struct CleanupWorker {
    sessions: Arc<Sessions>,
    interval: Duration,
    running: bool,
}

impl CleanupWorker {
    /// A worker sweeping every `CLEANUP_INTERVAL_SECONDS` of the context's limits.
    pub fn new(sessions: Arc<Sessions>) -> Self {
        let interval = sessions.limits().cleanup_interval;
        Self { sessions, interval, running: false }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return;
        }
        self.running = true;
        let sessions = self.sessions.clone();
        let sweep = async move { sessions.sweep().await };
        ctx.spawn(sweep.into_actor(self).map(|result, act, _| {
            act.running = false;
            match result {
                Ok(report) if report != Report::default() => log::info!("cleanup: {report:?}"),
                Ok(_) => {}
                Err(e) => log::warn!("cleanup sweep failed: {}", Chain(&e)),
            }
        }));
    }
}

impl Actor for CleanupWorker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(Duration::from_secs(5), |act, ctx| act.sweep(ctx));
        ctx.run_interval(self.interval, |act, ctx| act.sweep(ctx));
    }
}
