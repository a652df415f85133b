//! Who is online in one session, on this replica and on the others: what Phoenix.Presence is to
//! a Phoenix channel, kept apart from the actor as a plain struct.
//!
//! A participant is online here while any of its sockets is in the channel; each replica
//! announces who is online on it (on every change and every [`HEARTBEAT`]), and a replica not
//! heard of for [`EXPIRY`] is presumed dead, its entries gone. The sockets are told the merged
//! view as `presence_state` on joining and `presence_diff` on every change of who is online.
//!
//! A meta also says whether its participant is looking at the map (`viewing`, SPEC §8): true
//! while any of its sockets here is visible (a socket that never said is). A change of it
//! replaces the meta, as `Presence.update` does in Phoenix: a new `phx_ref`, the old one in
//! `phx_ref_prev`, and the diff lists the participant under both `leaves` and `joins`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::super::messages::SocketId;
use crate::domain::{Participant, ParticipantId};
use crate::views::rfc3339;

/// How often a replica repeats who is online on it, for the other replicas' Presence.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// A replica not heard of for this long is presumed dead and its Presence entries vanish.
pub const EXPIRY: Duration = Duration::from_secs(45);

/// The Phoenix.Presence meta of an online participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceMeta {
    /// Unique per coming online, as Phoenix makes it.
    pub phx_ref: String,
    /// The participant's name.
    pub display_name: String,
    /// Its colour.
    pub avatar_color: String,
    /// When it came online (RFC 3339).
    pub online_at: String,
    /// Whether it looks at the map now; a replica that does not say means yes.
    #[serde(default = "visible")]
    pub viewing: bool,
    /// The meta this one replaced, when `viewing` changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phx_ref_prev: Option<String>,
}

fn visible() -> bool {
    true
}

fn new_ref() -> String {
    format!("F{:016x}", rand::random::<u64>())
}

impl PresenceMeta {
    /// The meta of `p` coming online at `at`.
    fn new(p: &Participant, at: DateTime<Utc>) -> Self {
        Self {
            phx_ref: new_ref(),
            display_name: p.display_name.as_str().to_owned(),
            avatar_color: p.avatar_color.as_str().to_owned(),
            online_at: rfc3339(&at),
            viewing: true,
            phx_ref_prev: None,
        }
    }
}

/// One participant's entry in `presence_state` / `presence_diff`: `{"metas": [meta]}`.
#[derive(Debug, Serialize)]
pub struct Metas<'a> {
    metas: [&'a PresenceMeta; 1],
}

/// `presence_state`: user id → its metas.
pub type PresenceState<'a> = HashMap<ParticipantId, Metas<'a>>;

/// `presence_diff`: who came online and who went since the sockets were last told.
#[derive(Debug, Serialize)]
pub struct PresenceDiff {
    joins: HashMap<ParticipantId, MetasOwned>,
    leaves: HashMap<ParticipantId, MetasOwned>,
}

/// [`Metas`] that outlive the state they were taken from.
#[derive(Debug, Serialize)]
struct MetasOwned {
    metas: [PresenceMeta; 1],
}

/// Online here: the meta, and the sockets that keep the participant online (each visible or not).
struct Here {
    meta: PresenceMeta,
    sockets: HashMap<SocketId, bool>,
}

impl Here {
    /// Brings the meta's `viewing` in line with the sockets; true when that replaced the meta.
    fn refresh(&mut self) -> bool {
        let viewing = self.sockets.values().any(|visible| *visible);
        if viewing == self.meta.viewing {
            return false;
        }
        let prev = std::mem::replace(&mut self.meta.phx_ref, new_ref());
        self.meta.phx_ref_prev = Some(prev);
        self.meta.viewing = viewing;
        true
    }
}

/// Another replica's last announcement.
struct Elsewhere {
    heard: Instant,
    online: HashMap<ParticipantId, PresenceMeta>,
}

/// The session's Presence.
pub struct Presence {
    here: HashMap<ParticipantId, Here>,
    elsewhere: HashMap<Arc<str>, Elsewhere>,
    /// What the local sockets were last told.
    told: HashMap<ParticipantId, PresenceMeta>,
    last_announced: Instant,
}

impl Presence {
    /// Nobody online, nothing told yet.
    pub fn new(now: Instant) -> Self {
        Self { here: HashMap::new(), elsewhere: HashMap::new(), told: HashMap::new(), last_announced: now }
    }

    /// A socket of `p` joined the channel (visible until it says otherwise); true when this
    /// replica's entries changed: `p` just came online here, or now views through this socket.
    pub fn track(&mut self, socket: SocketId, p: &Participant, at: DateTime<Utc>) -> bool {
        let first = !self.here.contains_key(&p.id);
        let here =
            self.here.entry(p.id).or_insert_with(|| Here { meta: PresenceMeta::new(p, at), sockets: HashMap::new() });
        here.sockets.insert(socket, true);
        here.refresh() || first
    }

    /// A socket of `user` left the channel; true when this replica's entries changed: it was
    /// `user`'s last socket here, or the last visible one.
    pub fn untrack(&mut self, user: ParticipantId, socket: SocketId) -> bool {
        let Some(here) = self.here.get_mut(&user) else {
            return false;
        };
        if here.sockets.remove(&socket).is_none() {
            return false;
        }
        if here.sockets.is_empty() {
            self.here.remove(&user);
            return true;
        }
        here.refresh()
    }

    /// A socket of `user` says whether its user looks at the map; true when that changed the meta.
    pub fn set_viewing(&mut self, user: ParticipantId, socket: SocketId, visible: bool) -> bool {
        let Some(here) = self.here.get_mut(&user) else {
            return false;
        };
        match here.sockets.get_mut(&socket) {
            Some(v) => *v = visible,
            None => return false,
        }
        here.refresh()
    }

    /// Who looks at the map now, on any replica.
    pub fn viewers(&self) -> HashSet<ParticipantId> {
        let here = self.here.iter().filter(|(_, h)| h.meta.viewing).map(|(u, _)| *u);
        let elsewhere =
            self.elsewhere.values().flat_map(|r| r.online.iter().filter(|(_, m)| m.viewing).map(|(u, _)| *u));
        here.chain(elsewhere).collect()
    }

    /// `user` left the session: gone from here and from every replica's entries. True when it was
    /// online here (so the other replicas must hear of it).
    pub fn forget(&mut self, user: ParticipantId) -> bool {
        for replica in self.elsewhere.values_mut() {
            replica.online.remove(&user);
        }
        self.here.remove(&user).is_some()
    }

    /// Whether `user` has a socket in the channel here.
    pub fn is_here(&self, user: ParticipantId) -> bool {
        self.here.contains_key(&user)
    }

    /// Whether anybody is online here.
    pub fn anyone_here(&self) -> bool {
        !self.here.is_empty()
    }

    /// Who is online here, for announcing to the other replicas.
    pub fn here(&self) -> HashMap<ParticipantId, PresenceMeta> {
        self.here.iter().map(|(user, h)| (*user, h.meta.clone())).collect()
    }

    /// Another replica announced who is online on it; true when it is new to this session here
    /// (it then needs to learn who is online on this replica at once).
    pub fn heard(&mut self, origin: Arc<str>, online: HashMap<ParticipantId, PresenceMeta>, now: Instant) -> bool {
        self.elsewhere.insert(origin, Elsewhere { heard: now, online }).is_none()
    }

    /// Forgets replicas not heard of for [`EXPIRY`]; true when any was.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.elsewhere.len();
        self.elsewhere.retain(|_, r| now.duration_since(r.heard) < EXPIRY);
        self.elsewhere.len() != before
    }

    /// Whether this replica's entries are due to be repeated to the others.
    pub fn announce_due(&self, now: Instant) -> bool {
        self.anyone_here() && now.duration_since(self.last_announced) >= HEARTBEAT
    }

    /// This replica's entries were just announced.
    pub fn announced(&mut self, now: Instant) {
        self.last_announced = now;
    }

    /// Who is online on any replica, one meta each (this replica's first).
    fn merged(&self) -> HashMap<ParticipantId, PresenceMeta> {
        let mut merged = self.here();
        for replica in self.elsewhere.values() {
            for (user, meta) in &replica.online {
                merged.entry(*user).or_insert_with(|| meta.clone());
            }
        }
        merged
    }

    /// Who came online, who went and whose meta changed since the sockets were last told (who
    /// are now told); `None` when nothing did.
    pub fn diff(&mut self) -> Option<PresenceDiff> {
        let now = self.merged();
        let entry = |meta: &PresenceMeta| MetasOwned { metas: [meta.clone()] };
        let same = |a: Option<&PresenceMeta>, b: &PresenceMeta| a.is_some_and(|a| a.phx_ref == b.phx_ref);
        let joins: HashMap<_, _> =
            now.iter().filter(|(u, m)| !same(self.told.get(*u), m)).map(|(u, m)| (*u, entry(m))).collect();
        let leaves: HashMap<_, _> =
            self.told.iter().filter(|(u, m)| !same(now.get(*u), m)).map(|(u, m)| (*u, entry(m))).collect();
        self.told = now;
        (!joins.is_empty() || !leaves.is_empty()).then_some(PresenceDiff { joins, leaves })
    }

    /// What the sockets were last told, as `presence_state` for a socket that just joined.
    pub fn state(&self) -> PresenceState<'_> {
        self.told.iter().map(|(user, meta)| (*user, Metas { metas: [meta] })).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::domain::{AvatarColor, DisplayName, SessionId};

    fn person(name: &str) -> Participant {
        let now = Utc::now();
        Participant {
            id: ParticipantId::new(),
            session_id: SessionId::new(),
            display_name: DisplayName::from_trusted(name.into()),
            avatar_color: AvatarColor::from_trusted("#1E90FF".into()),
            joined_at: now,
            last_seen_at: now,
            removed_at: None,
        }
    }

    fn json_of(diff: Option<PresenceDiff>) -> Value {
        serde_json::to_value(diff).unwrap_or_default()
    }

    fn names(v: &Value, side: &str) -> Vec<String> {
        let mut names: Vec<String> = v[side]
            .as_object()
            .map(|m| m.values().filter_map(|e| e["metas"][0]["display_name"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn meta(name: &str) -> PresenceMeta {
        PresenceMeta {
            phx_ref: "R".into(),
            display_name: name.into(),
            avatar_color: "#000000".into(),
            online_at: "t".into(),
            viewing: true,
            phx_ref_prev: None,
        }
    }

    #[test]
    fn viewing_follows_any_visible_socket_and_replaces_the_meta() {
        let mut p = Presence::new(Instant::now());
        let ana = person("Ana");
        p.track(1, &ana, Utc::now());
        p.track(2, &ana, Utc::now());
        p.diff();
        assert!(p.viewers().contains(&ana.id), "a socket that never said is visible");
        assert!(!p.set_viewing(ana.id, 1, false), "socket 2 still looks");
        let first = p.here()[&ana.id].phx_ref.clone();
        assert!(p.set_viewing(ana.id, 2, false));
        assert!(p.viewers().is_empty());
        let meta = p.here()[&ana.id].clone();
        assert_eq!((meta.viewing, meta.phx_ref_prev.as_deref()), (false, Some(first.as_str())));
        let diff = json_of(p.diff());
        assert_eq!((names(&diff, "joins"), names(&diff, "leaves")), (vec!["Ana".into()], vec!["Ana".into()]));
        assert_eq!(diff["joins"][ana.id.to_string()]["metas"][0]["viewing"], false);
        assert_eq!(diff["leaves"][ana.id.to_string()]["metas"][0]["viewing"], true);
        assert!(!p.set_viewing(ana.id, 2, false), "no change, no new meta");
        assert!(p.diff().is_none());
        // A new visible socket makes it view again; the hidden one leaving changes nothing more.
        assert!(p.track(3, &ana, Utc::now()));
        assert!(!p.untrack(ana.id, 1));
        assert!(p.viewers().contains(&ana.id));
        assert!(!p.set_viewing(ana.id, 9, false), "an unknown socket");
    }

    #[test]
    fn viewers_elsewhere_count_and_old_replicas_mean_visible() {
        let now = Instant::now();
        let mut p = Presence::new(now);
        let (cy, di) = (ParticipantId::new(), ParticipantId::new());
        let hidden = PresenceMeta { viewing: false, ..meta("Di") };
        let old: PresenceMeta = serde_json::from_value(serde_json::json!(
            {"phx_ref": "R", "display_name": "Cy", "avatar_color": "#000000", "online_at": "t"}))
        .unwrap_or_else(|e| panic!("{e}"));
        p.heard("replica-b".into(), HashMap::from([(cy, old), (di, hidden)]), now);
        assert_eq!(p.viewers(), HashSet::from([cy]));
    }

    #[test]
    fn joins_and_leaves_are_told_once() {
        let now = Instant::now();
        let mut p = Presence::new(now);
        let (ana, bo) = (person("Ana"), person("Bo"));
        assert!(p.track(1, &ana, Utc::now()));
        assert!(p.track(2, &bo, Utc::now()));
        let diff = json_of(p.diff());
        assert_eq!((names(&diff, "joins"), names(&diff, "leaves")), (vec!["Ana".into(), "Bo".into()], vec![]));
        assert!(p.diff().is_none(), "nothing changed since");
        let state = serde_json::to_value(p.state()).unwrap_or_default();
        assert_eq!(state[ana.id.to_string()]["metas"][0]["display_name"], "Ana");
        assert!(p.untrack(bo.id, 2));
        assert_eq!(names(&json_of(p.diff()), "leaves"), vec!["Bo".to_owned()]);
        assert!(!p.is_here(bo.id) && p.is_here(ana.id));
    }

    #[test]
    fn several_sockets_keep_one_entry() {
        let mut p = Presence::new(Instant::now());
        let ana = person("Ana");
        assert!(p.track(1, &ana, Utc::now()));
        let first = p.here()[&ana.id].clone();
        assert!(!p.track(2, &ana, Utc::now()), "a second socket is not a new arrival");
        assert!(!p.track(2, &ana, Utc::now()), "nor is a socket joining again");
        assert_eq!(p.here()[&ana.id], first, "the meta of the first socket stays");
        p.diff();
        assert!(!p.untrack(ana.id, 1), "one socket is left");
        assert!(p.diff().is_none());
        assert!(p.untrack(ana.id, 2));
        assert!(!p.untrack(ana.id, 2), "untracking twice is harmless");
        assert!(p.diff().is_some());
    }

    #[test]
    fn other_replicas_are_merged_this_one_first() {
        let now = Instant::now();
        let mut p = Presence::new(now);
        let ana = person("Ana");
        p.track(1, &ana, Utc::now());
        p.diff();
        let other = ParticipantId::new();
        let online = HashMap::from([(other, meta("Cy")), (ana.id, meta("Ana on B"))]);
        assert!(p.heard("replica-b".into(), online.clone(), now), "a replica new here");
        assert!(!p.heard("replica-b".into(), online, now), "heard of before");
        let diff = json_of(p.diff());
        assert_eq!(names(&diff, "joins"), vec!["Cy".to_owned()]);
        let state = serde_json::to_value(p.state()).unwrap_or_default();
        assert_eq!(state[ana.id.to_string()]["metas"][0]["display_name"], "Ana", "this replica's meta wins");
        // Ana leaves the session: gone everywhere, even where replica B still listed her.
        assert!(p.forget(ana.id));
        assert_eq!(names(&json_of(p.diff()), "leaves"), vec!["Ana".to_owned()]);
        assert!(!p.forget(ana.id));
    }

    #[test]
    fn silent_replicas_expire() {
        let start = Instant::now();
        let mut p = Presence::new(start);
        p.heard("replica-b".into(), HashMap::from([(ParticipantId::new(), meta("Cy"))]), start);
        p.diff();
        assert!(!p.expire(start + EXPIRY - Duration::from_secs(1)));
        assert!(p.expire(start + EXPIRY));
        assert_eq!(names(&json_of(p.diff()), "leaves"), vec!["Cy".to_owned()]);
    }

    #[test]
    fn announcements_repeat_only_while_someone_is_here() {
        let start = Instant::now();
        let mut p = Presence::new(start);
        assert!(!p.announce_due(start + HEARTBEAT), "nobody here");
        p.track(1, &person("Ana"), Utc::now());
        assert!(!p.announce_due(start + HEARTBEAT - Duration::from_secs(1)));
        assert!(p.announce_due(start + HEARTBEAT));
        p.announced(start + HEARTBEAT);
        assert!(!p.announce_due(start + HEARTBEAT));
        assert_eq!(p.here().len(), 1);
    }
}
