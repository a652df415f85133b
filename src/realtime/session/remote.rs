//! The session actor's side of the cluster: what it publishes for the other replicas, and what
//! it does with what they published (see `realtime::cluster` for the bus itself).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;

use super::super::cluster::ClusterEvent;
use super::{Phase, SessionActor};
use crate::domain::{Participant, ParticipantId, PositionView, Transition};

impl SessionActor {
    /// Tells the other replicas who is online here.
    pub(super) fn publish_presence(&mut self) {
        if self.deps.bus.is_enabled() {
            self.presence.announced(Instant::now());
            self.deps.bus.publish(self.id, &ClusterEvent::Presence { online: self.presence.here() });
        }
    }

    /// Acts on an event another replica published for this session.
    pub(super) fn remote(&mut self, origin: Arc<str>, event: ClusterEvent, ctx: &mut Context<Self>) {
        match event {
            ClusterEvent::Location { view } => self.remote_position(PositionView::Clear(view)),
            ClusterEvent::SealedLocation { view } => self.remote_position(PositionView::Sealed(view)),
            ClusterEvent::Joined { user_id, display_name, avatar_color, joined_at } => {
                self.participant_joined(Participant {
                    id: user_id,
                    session_id: self.id,
                    display_name,
                    avatar_color,
                    joined_at,
                    last_seen_at: joined_at,
                    removed_at: None,
                });
            }
            ClusterEvent::Left { user_id, reason } => self.participant_left(user_id, reason),
            ClusterEvent::Ended { reason } => self.end(reason, false, ctx),
            ClusterEvent::DestinationSet { destination } => self.destination_changed(Some(destination)),
            ClusterEvent::DestinationCleared => self.destination_changed(None),
            // The bus's own business (see `ClusterEvent::Listening`).
            ClusterEvent::Listening => {}
            ClusterEvent::SessionUpdated { name, locked } => self.session_updated(name, locked),
            ClusterEvent::Arrived { user_id, arrived_at, epoch } => {
                self.remote_transition(user_id, Transition::Arrived, arrived_at, epoch)
            }
            ClusterEvent::Departed { user_id, departed_at, epoch } => {
                self.remote_transition(user_id, Transition::Departed, departed_at, epoch)
            }
            ClusterEvent::Presence { online } => {
                // A replica new to this session (its actor just started) learns who is here at once.
                let newcomer = self.presence.heard(origin, online, Instant::now());
                self.sync_presence(None);
                if newcomer && self.presence.anyone_here() {
                    self.publish_presence();
                }
            }
        }
    }

    /// Fans out another replica's position to the sockets here, and keeps it for snapshots.
    fn remote_position(&mut self, view: PositionView) {
        let e2e = self.session.as_ref().is_some_and(|s| s.e2e);
        // Only a position of the session's own kind: a clear one must never reach an e2e
        // session's sockets, whoever sent it.
        if self.phase != Phase::Live || e2e != matches!(view, PositionView::Sealed(_)) {
            return;
        }
        let Ok(user) = view.user_id().parse::<ParticipantId>() else {
            return;
        };
        let delivered = self.sockets.broadcast(&self.topic, "location_update", &view, None, true);
        self.deps.metrics.deliveries_out.inc_by(delivered);
        self.locations.insert(user, (view, Instant::now() + self.deps.limits.location_ttl));
        let now = Utc::now();
        self.last_activity = self.last_activity.max(now);
        if let Some(m) = self.members.get_mut(&user) {
            m.participant.last_seen_at = m.participant.last_seen_at.max(now);
        }
    }
}
