//! The sockets in one session's channel, and the frames fanned out to them.
//!
//! A push is encoded once per serializer in use — the same bytes shared by every recipient — so
//! the set keeps how many of its sockets speak each serializer. Those counts change only where
//! sockets come and go, inside this type, so they cannot drift from the sockets themselves.

use std::collections::HashMap;

use bytestring::ByteString;
use serde::Serialize;
use serde_json::Value;

use super::super::messages::{SocketHandle, SocketId};
use super::super::outbox::Outgoing;
use super::super::protocol::{encode_push, Vsn};
use crate::domain::ParticipantId;

/// One socket in the channel: how to reach it, and the `join_ref` of its `phx_join`.
pub struct Socket {
    /// Its queue and identity.
    pub handle: SocketHandle,
    /// The join it is in (lifecycle frames carry it).
    pub join_ref: Value,
}

impl Socket {
    /// Queues an item for this socket (the push wakes it).
    pub fn send(&self, item: Outgoing) {
        self.handle.outbox.push(item);
    }

    /// Queues a text frame that is never dropped.
    pub fn send_frame(&self, text: ByteString) {
        self.send(Outgoing::Frame { text, droppable: false });
    }
}

/// A push encoded for every serializer in use (`None` where no socket speaks it).
pub type Frames = [Option<ByteString>; 3];

/// The channel's sockets.
#[derive(Default)]
pub struct Sockets {
    members: HashMap<SocketId, Socket>,
    per_vsn: [usize; 3],
}

impl Sockets {
    /// Puts a socket in the channel; a socket joining again replaces its old join, returned.
    pub fn insert(&mut self, handle: SocketHandle, join_ref: Value) -> Option<Socket> {
        self.per_vsn[handle.vsn.index()] += 1;
        let replaced = self.members.insert(handle.id, Socket { handle, join_ref });
        if let Some(old) = &replaced {
            self.per_vsn[old.handle.vsn.index()] -= 1;
        }
        replaced
    }

    /// Takes a socket out of the channel.
    pub fn remove(&mut self, id: SocketId) -> Option<Socket> {
        let member = self.members.remove(&id)?;
        self.per_vsn[member.handle.vsn.index()] -= 1;
        Some(member)
    }

    /// Takes every socket of one participant out of the channel.
    pub fn remove_participant(&mut self, user: ParticipantId) -> Vec<Socket> {
        let theirs: Vec<SocketId> =
            self.members.values().filter(|m| m.handle.participant == user).map(|m| m.handle.id).collect();
        theirs.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Takes every socket out of the channel (it ended or crashed).
    pub fn take_all(&mut self) -> Vec<Socket> {
        self.per_vsn = [0; 3];
        self.members.drain().map(|(_, m)| m).collect()
    }

    /// The socket, if it is in the channel.
    pub fn get(&self, id: SocketId) -> Option<&Socket> {
        self.members.get(&id)
    }

    /// Every socket in the channel.
    pub fn iter(&self) -> impl Iterator<Item = &Socket> {
        self.members.values()
    }

    /// True when no socket is in the channel.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Encodes a push once per serializer in use.
    pub fn encode(&self, topic: &str, event: &str, payload: &impl Serialize) -> Frames {
        let mut frames: Frames = Default::default();
        for vsn in Vsn::ALL {
            if self.per_vsn[vsn.index()] > 0 {
                frames[vsn.index()] = Some(encode_push(vsn, &Value::Null, topic, event, payload));
            }
        }
        frames
    }

    /// Queues a push on every socket but `except`; how many got it.
    pub fn broadcast(
        &self,
        topic: &str,
        event: &str,
        payload: &impl Serialize,
        except: Option<SocketId>,
        droppable: bool,
    ) -> u64 {
        let frames = self.encode(topic, event, payload);
        let mut delivered = 0;
        for member in self.members.values().filter(|m| Some(m.handle.id) != except) {
            if let Some(text) = &frames[member.handle.vsn.index()] {
                member.send(Outgoing::Frame { text: text.clone(), droppable });
                delivered += 1;
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::fixture::{drain, socket as handle, Got};
    use super::*;

    /// The text frames queued for `h`, as JSON.
    fn frames_in(h: &SocketHandle) -> Vec<Value> {
        drain(h)
            .into_iter()
            .filter_map(|g| match g {
                Got::Frame(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn counts_follow_the_sockets() {
        let (alice, bob) = (ParticipantId::new(), ParticipantId::new());
        let mut s = Sockets::default();
        s.insert(handle(1, alice, Vsn::V2), Value::from("1"));
        s.insert(handle(2, alice, Vsn::V1), Value::from("1"));
        s.insert(handle(3, bob, Vsn::V2), Value::from("1"));
        assert_eq!(s.per_vsn, [2, 1, 0], "two V2 sockets, one V1");
        // The same socket joining again, now speaking another serializer, replaces its old join.
        let replaced = s.insert(handle(3, bob, Vsn::Plain), Value::from("2"));
        assert_eq!(replaced.map(|m| m.join_ref), Some(Value::from("1")));
        assert_eq!((s.members.len(), s.per_vsn.iter().sum::<usize>()), (3, 3));
        assert_eq!(s.remove_participant(alice).len(), 2);
        assert_eq!(s.per_vsn.iter().sum::<usize>(), 1);
        assert!(s.remove(3).is_some() && s.remove(3).is_none());
        assert_eq!((s.is_empty(), s.per_vsn), (true, [0; 3]));
        s.insert(handle(4, bob, Vsn::V2), Value::Null);
        assert_eq!(s.take_all().len(), 1);
        assert_eq!((s.is_empty(), s.per_vsn), (true, [0; 3]));
    }

    #[test]
    fn broadcasts_encode_once_per_serializer_in_use() {
        let mut s = Sockets::default();
        let (a, b, c) = (
            handle(1, ParticipantId::new(), Vsn::V2),
            handle(2, ParticipantId::new(), Vsn::V2),
            handle(3, ParticipantId::new(), Vsn::V1),
        );
        for h in [&a, &b, &c] {
            s.insert(h.clone(), Value::Null);
        }
        let frames = s.encode("location:x", "ping", &serde_json::json!({}));
        assert!(frames[Vsn::V2.index()].is_some() && frames[Vsn::V1.index()].is_some());
        assert!(frames[Vsn::Plain.index()].is_none(), "no plain socket, no plain encoding");
        assert_eq!(s.broadcast("location:x", "ev", &serde_json::json!({"n": 1}), Some(1), true), 2);
        assert!(frames_in(&a).is_empty(), "the sender is left out");
        assert_eq!(frames_in(&b), vec![serde_json::json!([null, null, "location:x", "ev", {"n": 1}])]);
        assert_eq!(frames_in(&c).len(), 1);
    }
}
