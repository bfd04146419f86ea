//! Replay detection: a sender that got no acknowledgement sends the same message again
//! (same MSH-10). It must get the same answer, and the message must not be applied twice.
//!
//! [`ReplayCache`] remembers, for the most recent messages, the answer sent, keyed by the
//! sender (MSH-3 and MSH-4) and MSH-10, with the message's [`Message::digest`]: the same key
//! and digest is a replay (answer as before); the same key with another digest is a sender
//! reusing a control id for a different message, which must not be mistaken for a replay.
//! It is bounded (oldest forgotten first) and in memory; a durable record of applied
//! control ids belongs with the application's own durability.
//!
//! [`Message::digest`]: super::message::Message::digest

use std::collections::{HashMap, VecDeque};

use super::header::Header;

/// The identity of a message: its sender and control id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplayKey {
    /// MSH-3 and MSH-4 (namespace and universal ids).
    sender: [String; 4],
    /// MSH-10.
    control_id: String,
}

impl ReplayKey {
    /// The key of a message from its header.
    pub fn of(h: &Header) -> Self {
        ReplayKey {
            sender: [
                h.sending_application.namespace_id.clone(),
                h.sending_application.universal_id.clone(),
                h.sending_facility.namespace_id.clone(),
                h.sending_facility.universal_id.clone(),
            ],
            control_id: h.control_id.clone(),
        }
    }

    /// The key as bytes, one field after another each ended by NUL (which no HL7 text
    /// holds): the identity under which the application keeps the message's receipt.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = b"hl7v2\0".to_vec();
        for part in self.sender.iter().chain([&self.control_id]) {
            out.extend_from_slice(part.as_bytes());
            out.push(0);
        }
        out
    }

    /// [`ReplayKey::to_bytes`] without the control id: the sender alone.
    pub fn sender_bytes(&self) -> Vec<u8> {
        let mut out = self.to_bytes();
        out.truncate(out.len() - self.control_id.len() - 1);
        out
    }
}

/// What the cache knows of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen<'a> {
    /// Not seen (or forgotten): handle it.
    New,
    /// The same message again: send this answer again, apply nothing.
    Replay(&'a [u8]),
    /// The same sender and control id with different content: refuse it (205, duplicate
    /// key identifier on MSH-10), apply nothing.
    Conflict,
}

/// A bounded map from [`ReplayKey`] to the digest and answer of the message; see the module
/// docs.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    capacity: usize,
    entries: HashMap<ReplayKey, ([u8; 32], Vec<u8>)>,
    order: VecDeque<ReplayKey>,
}

impl ReplayCache {
    /// A cache remembering the last `capacity` messages (at least one).
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// How many messages are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What is known of the message with this key and digest.
    pub fn check(&self, key: &ReplayKey, digest: &[u8; 32]) -> Seen<'_> {
        match self.entries.get(key) {
            None => Seen::New,
            Some((d, answer)) if d == digest => Seen::Replay(answer),
            Some(_) => Seen::Conflict,
        }
    }

    /// Remembers the answer sent to a message, forgetting the oldest when full. A message
    /// remembered again keeps its place and gets the new answer.
    pub fn remember(&mut self, key: ReplayKey, digest: [u8; 32], answer: Vec<u8>) {
        if let Some(entry) = self.entries.get_mut(&key) {
            *entry = (digest, answer);
            return;
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, (digest, answer));
    }
}

#[cfg(test)]
mod tests {
    use super::super::header::Hd;
    use super::*;

    fn key(app: &str, ctl: &str) -> ReplayKey {
        ReplayKey::of(&Header {
            sending_application: Hd::named(app),
            control_id: ctl.into(),
            ..Header::default()
        })
    }

    #[test]
    fn replays_conflicts_and_eviction() {
        let mut c = ReplayCache::new(2);
        let (d1, d2) = ([1u8; 32], [2u8; 32]);
        assert_eq!(c.check(&key("A", "1"), &d1), Seen::New);
        c.remember(key("A", "1"), d1, b"ack1".to_vec());
        assert_eq!(c.check(&key("A", "1"), &d1), Seen::Replay(b"ack1"));
        assert_eq!(c.check(&key("A", "1"), &d2), Seen::Conflict);
        assert_eq!(
            c.check(&key("B", "1"), &d1),
            Seen::New,
            "another sender's id 1"
        );
        c.remember(key("B", "1"), d1, b"ackB".to_vec());
        c.remember(key("A", "2"), d2, b"ack2".to_vec());
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.check(&key("A", "1"), &d1),
            Seen::New,
            "the oldest is forgotten"
        );
        assert_eq!(c.check(&key("B", "1"), &d1), Seen::Replay(b"ackB"));
        c.remember(key("B", "1"), d1, b"ackB2".to_vec());
        assert_eq!(c.len(), 2);
        assert_eq!(c.check(&key("B", "1"), &d1), Seen::Replay(b"ackB2"));
    }
}
