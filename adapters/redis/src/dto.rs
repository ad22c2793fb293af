//! The JSON shapes stored in Redis and sent over pub/sub, kept apart from the serde-free domain.

use anyhow::{anyhow, Context};
use application::ports::{RoomEvent, SessionEndReason, SessionId, UserSummary};
use chrono::{DateTime, SecondsFormat, Utc};
use domain::{
    Change, Emoji, FileId, FileKind, FileMeta, FileName, Message, MessageBody, MessageId, MessageKind, MessageState,
    MessageText, ReactionMark, RoomId, Sender, Seq, Timestamp, UserId, Username,
};
use serde::{Deserialize, Serialize};

/// A message as stored in the cache, the archive stream and the dedupe keys.
///
/// `seq` is absent in what Rust sends to the append script: the script assigns it and splices it in
/// as the first field, so the stored JSON is complete without re-encoding it in Lua.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MessageDto {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub id: String,
    pub room_id: String,
    pub sender: UserDto,
    pub body: BodyDto,
    /// RFC 3339 with as many fractional digits as needed, so the instant round-trips exactly.
    pub sent_at: String,
    /// What changes made of the message; absent for a message as sent and for a change entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<MarkDto>,
}

/// One user's newest reaction change with one emoji.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MarkDto {
    pub emoji: String,
    pub user: String,
    pub seq: u64,
    pub added: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UserDto {
    pub id: String,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum BodyDto {
    Text {
        text: String,
    },
    File {
        file_id: String,
        name: String,
        size: u64,
        content_type: String,
        kind: String,
        expires_at: String,
    },
    /// A deleted message: its kind only.
    Removed {
        kind: String,
    },
    Edit {
        target: u64,
        text: String,
    },
    Delete {
        target: u64,
    },
    React {
        target: u64,
        emoji: String,
        added: bool,
    },
}

/// Every `RoomEvent` variant; unknown types from a newer node fail to decode and are skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum EventDto {
    Message { message: Box<MessageDto> },
    MemberJoined { room_id: String, user: UserDto },
    MemberLeft { room_id: String, user: UserDto },
    RoomDeleted { room_id: String },
    Typing { room_id: String, user: UserDto },
    Read { room_id: String, user: UserDto, seq: u64 },
    Presence { user_id: String, online: bool, rooms: Vec<String> },
    SessionEnded { user_id: String, session_id: String, reason: String },
}

pub(crate) fn timestamp_to_string(at: Timestamp) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn timestamp_from_str(raw: &str) -> anyhow::Result<Timestamp> {
    Ok(DateTime::parse_from_rfc3339(raw).with_context(|| format!("bad timestamp {raw:?}"))?.with_timezone(&Utc))
}

fn uuid_from_str(raw: &str) -> anyhow::Result<uuid::Uuid> {
    uuid::Uuid::parse_str(raw).with_context(|| format!("bad id {raw:?}"))
}

impl MessageDto {
    /// The parts of a message known before the log assigns its seq.
    pub fn unsequenced(
        id: MessageId,
        room_id: RoomId,
        sender: &Sender,
        body: &MessageBody,
        sent_at: Timestamp,
    ) -> Self {
        Self {
            seq: None,
            id: id.to_string(),
            room_id: room_id.to_string(),
            sender: UserDto { id: sender.id.to_string(), username: sender.username.as_str().to_owned() },
            body: BodyDto::from(body),
            sent_at: timestamp_to_string(sent_at),
            edited_at: None,
            edit_seq: None,
            deleted_at: None,
            reactions: Vec::new(),
        }
    }

    pub fn from_message(message: &Message) -> Self {
        let state = &message.state;
        Self {
            seq: Some(message.seq.get()),
            edited_at: state.edited_at.map(timestamp_to_string),
            edit_seq: state.edit_seq.map(Seq::get),
            deleted_at: state.deleted_at.map(timestamp_to_string),
            reactions: state
                .reactions
                .iter()
                .map(|m| MarkDto {
                    emoji: m.emoji.as_str().to_owned(),
                    user: m.user.to_string(),
                    seq: m.seq.get(),
                    added: m.added,
                })
                .collect(),
            ..Self::unsequenced(message.id, message.room_id, &message.sender, &message.body, message.sent_at)
        }
    }

    fn state(&self) -> anyhow::Result<MessageState> {
        Ok(MessageState {
            edited_at: self.edited_at.as_deref().map(timestamp_from_str).transpose()?,
            edit_seq: self.edit_seq.map(seq_from).transpose()?,
            deleted_at: self.deleted_at.as_deref().map(timestamp_from_str).transpose()?,
            reactions: self
                .reactions
                .iter()
                .map(|m| {
                    Ok(ReactionMark {
                        emoji: Emoji::new(&m.emoji).with_context(|| format!("bad emoji {:?}", m.emoji))?,
                        user: UserId::from_uuid(uuid_from_str(&m.user)?),
                        seq: seq_from(m.seq)?,
                        added: m.added,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        })
    }

    pub fn into_message(self) -> anyhow::Result<Message> {
        let raw_seq = self.seq.ok_or_else(|| anyhow!("stored message {} has no seq", self.id))?;
        let seq = Seq::new(raw_seq).ok_or_else(|| anyhow!("stored message {} has seq 0", self.id))?;
        Ok(Message {
            id: MessageId::from_uuid(uuid_from_str(&self.id)?),
            room_id: RoomId::from_uuid(uuid_from_str(&self.room_id)?),
            seq,
            sender: Sender {
                id: UserId::from_uuid(uuid_from_str(&self.sender.id)?),
                username: self.sender.username()?,
            },
            state: self.state()?,
            body: self.body.into_body()?,
            sent_at: timestamp_from_str(&self.sent_at)?,
        })
    }
}

impl UserDto {
    fn from_summary(user: &UserSummary) -> Self {
        Self { id: user.id.to_string(), username: user.username.as_str().to_owned() }
    }

    fn username(&self) -> anyhow::Result<Username> {
        Username::new(&self.username).with_context(|| format!("bad username {:?}", self.username))
    }

    fn into_summary(self) -> anyhow::Result<UserSummary> {
        Ok(UserSummary { id: UserId::from_uuid(uuid_from_str(&self.id)?), username: self.username()? })
    }
}

impl From<&MessageBody> for BodyDto {
    fn from(body: &MessageBody) -> Self {
        match body {
            MessageBody::Text(text) => Self::Text { text: text.as_str().to_owned() },
            MessageBody::File(meta) => Self::File {
                file_id: meta.id.to_string(),
                name: meta.name.as_str().to_owned(),
                size: meta.size,
                content_type: meta.content_type.clone(),
                kind: meta.kind.as_str().to_owned(),
                expires_at: timestamp_to_string(meta.expires_at),
            },
            MessageBody::Removed(kind) => Self::Removed { kind: kind.as_str().to_owned() },
            MessageBody::Change(Change::Edit { target, text }) => {
                Self::Edit { target: target.get(), text: text.as_str().to_owned() }
            }
            MessageBody::Change(Change::Delete { target }) => Self::Delete { target: target.get() },
            MessageBody::Change(Change::React { target, emoji, added }) => {
                Self::React { target: target.get(), emoji: emoji.as_str().to_owned(), added: *added }
            }
        }
    }
}

fn seq_from(raw: u64) -> anyhow::Result<Seq> {
    Seq::new(raw).ok_or_else(|| anyhow!("seq 0 is not a seq"))
}

impl BodyDto {
    fn into_body(self) -> anyhow::Result<MessageBody> {
        Ok(match self {
            Self::Text { text } => MessageBody::Text(MessageText::new(&text).context("bad message text")?),
            Self::File { file_id, name, size, content_type, kind, expires_at } => MessageBody::File(FileMeta {
                id: FileId::from_uuid(uuid_from_str(&file_id)?),
                // Stored names were sanitised on upload, and sanitising is idempotent.
                name: FileName::sanitize(&name),
                size,
                content_type,
                kind: FileKind::parse(&kind).ok_or_else(|| anyhow!("bad file kind {kind:?}"))?,
                expires_at: timestamp_from_str(&expires_at)?,
            }),
            Self::Removed { kind } => MessageBody::Removed(
                MessageKind::parse(&kind)
                    .filter(|k| k.is_content())
                    .ok_or_else(|| anyhow!("bad removed kind {kind:?}"))?,
            ),
            Self::Edit { target, text } => MessageBody::Change(Change::Edit {
                target: seq_from(target)?,
                text: MessageText::new(&text).context("bad edit text")?,
            }),
            Self::Delete { target } => MessageBody::Change(Change::Delete { target: seq_from(target)? }),
            Self::React { target, emoji, added } => MessageBody::Change(Change::React {
                target: seq_from(target)?,
                emoji: Emoji::new(&emoji).with_context(|| format!("bad emoji {emoji:?}"))?,
                added,
            }),
        })
    }
}

fn room_id_from_str(raw: &str) -> anyhow::Result<RoomId> {
    Ok(RoomId::from_uuid(uuid_from_str(raw)?))
}

fn user_id_from_str(raw: &str) -> anyhow::Result<UserId> {
    Ok(UserId::from_uuid(uuid_from_str(raw)?))
}

impl From<&RoomEvent> for EventDto {
    fn from(event: &RoomEvent) -> Self {
        match event {
            RoomEvent::Message(message) => Self::Message { message: Box::new(MessageDto::from_message(message)) },
            RoomEvent::MemberJoined { room_id, user } => {
                Self::MemberJoined { room_id: room_id.to_string(), user: UserDto::from_summary(user) }
            }
            RoomEvent::MemberLeft { room_id, user } => {
                Self::MemberLeft { room_id: room_id.to_string(), user: UserDto::from_summary(user) }
            }
            RoomEvent::RoomDeleted { room_id } => Self::RoomDeleted { room_id: room_id.to_string() },
            RoomEvent::Read { room_id, user, seq } => {
                Self::Read { room_id: room_id.to_string(), user: UserDto::from_summary(user), seq: seq.get() }
            }
            RoomEvent::Typing { room_id, user } => {
                Self::Typing { room_id: room_id.to_string(), user: UserDto::from_summary(user) }
            }
            RoomEvent::Presence { user_id, online, rooms } => Self::Presence {
                user_id: user_id.to_string(),
                online: *online,
                rooms: rooms.iter().map(ToString::to_string).collect(),
            },
            RoomEvent::SessionEnded { user_id, session, reason } => Self::SessionEnded {
                user_id: user_id.to_string(),
                session_id: session.0.to_string(),
                reason: reason.code().to_owned(),
            },
        }
    }
}

impl EventDto {
    pub fn into_event(self) -> anyhow::Result<RoomEvent> {
        Ok(match self {
            Self::Message { message } => RoomEvent::Message(message.into_message()?),
            Self::MemberJoined { room_id, user } => {
                RoomEvent::MemberJoined { room_id: room_id_from_str(&room_id)?, user: user.into_summary()? }
            }
            Self::MemberLeft { room_id, user } => {
                RoomEvent::MemberLeft { room_id: room_id_from_str(&room_id)?, user: user.into_summary()? }
            }
            Self::RoomDeleted { room_id } => RoomEvent::RoomDeleted { room_id: room_id_from_str(&room_id)? },
            Self::Read { room_id, user, seq } => RoomEvent::Read {
                room_id: room_id_from_str(&room_id)?,
                user: user.into_summary()?,
                seq: Seq::new(seq).context("a read event's seq starts at 1")?,
            },
            Self::Typing { room_id, user } => {
                RoomEvent::Typing { room_id: room_id_from_str(&room_id)?, user: user.into_summary()? }
            }
            Self::Presence { user_id, online, rooms } => RoomEvent::Presence {
                user_id: user_id_from_str(&user_id)?,
                online,
                rooms: rooms.iter().map(|r| room_id_from_str(r)).collect::<anyhow::Result<_>>()?,
            },
            Self::SessionEnded { user_id, session_id, reason } => RoomEvent::SessionEnded {
                user_id: user_id_from_str(&user_id)?,
                session: SessionId(session_id.parse().context("session_id is not a UUID")?),
                reason: SessionEndReason::from_code(&reason)
                    .ok_or_else(|| anyhow!("unknown session end reason {reason:?}"))?,
            },
        })
    }
}

/// Decodes a complete stored message.
pub(crate) fn decode_message(json: &str) -> anyhow::Result<Message> {
    serde_json::from_str::<MessageDto>(json).context("stored message is not valid JSON")?.into_message()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64, nanos: u32) -> Timestamp {
        Utc.timestamp_opt(secs, nanos).single().expect("valid instant")
    }

    fn sender() -> Sender {
        Sender { id: UserId::from_uuid(uuid::Uuid::now_v7()), username: Username::new("alice").expect("valid") }
    }

    fn message(body: MessageBody) -> Message {
        Message {
            id: MessageId::from_uuid(uuid::Uuid::now_v7()),
            room_id: RoomId::from_uuid(uuid::Uuid::now_v7()),
            seq: Seq::new(42).expect("nonzero"),
            sender: sender(),
            body,
            sent_at: at(1_700_000_000, 123_456_789),
            state: MessageState::default(),
        }
    }

    fn round_trip(message: &Message) -> Message {
        let json = serde_json::to_string(&MessageDto::from_message(message)).expect("encodes");
        decode_message(&json).expect("decodes")
    }

    #[test]
    fn a_text_message_round_trips_with_nanosecond_timestamps() {
        let original = message(MessageBody::Text(MessageText::new("héllo\n\tworld").expect("valid")));
        assert_eq!(round_trip(&original), original);
    }

    #[test]
    fn a_file_message_round_trips_every_field() {
        let original = message(MessageBody::File(FileMeta {
            id: FileId::from_uuid(uuid::Uuid::now_v7()),
            name: FileName::sanitize("photo of me.png"),
            size: u64::MAX,
            content_type: "image/png".to_owned(),
            kind: FileKind::Image,
            expires_at: at(1_800_000_000, 0),
        }));
        assert_eq!(round_trip(&original), original);
    }

    #[test]
    fn changes_tombstones_and_state_round_trip() {
        let target = Seq::new(7).expect("nonzero");
        let emoji = Emoji::new("👍").expect("valid");
        let bodies = [
            MessageBody::Removed(MessageKind::Image),
            MessageBody::Change(Change::Edit { target, text: MessageText::new("new").expect("valid") }),
            MessageBody::Change(Change::Delete { target }),
            MessageBody::Change(Change::React { target, emoji: emoji.clone(), added: false }),
        ];
        for body in bodies {
            let original = message(body);
            assert_eq!(round_trip(&original), original);
        }
        let mut edited = message(MessageBody::Text(MessageText::new("x").expect("valid")));
        edited.state = MessageState {
            edited_at: Some(at(1_700_000_001, 5)),
            edit_seq: Seq::new(50),
            deleted_at: None,
            reactions: vec![ReactionMark { emoji, user: sender().id, seq: target, added: true }],
        };
        assert_eq!(round_trip(&edited), edited);
    }

    #[test]
    fn an_unsequenced_message_has_no_seq_field_and_starts_an_object() {
        let m = message(MessageBody::Text(MessageText::new("x").expect("valid")));
        let json = serde_json::to_string(&MessageDto::unsequenced(m.id, m.room_id, &m.sender, &m.body, m.sent_at))
            .expect("encodes");
        assert!(json.starts_with("{\"id\":"), "{json}");
        assert!(!json.contains("\"seq\""));
    }

    #[test]
    fn a_message_without_seq_is_refused() {
        let m = message(MessageBody::Text(MessageText::new("x").expect("valid")));
        let json = serde_json::to_string(&MessageDto::unsequenced(m.id, m.room_id, &m.sender, &m.body, m.sent_at))
            .expect("encodes");
        assert!(decode_message(&json).is_err());
    }

    #[test]
    fn every_event_variant_round_trips() {
        let room_id = RoomId::from_uuid(uuid::Uuid::now_v7());
        let user =
            UserSummary { id: UserId::from_uuid(uuid::Uuid::now_v7()), username: Username::new("bob").expect("ok") };
        let events = vec![
            RoomEvent::Message(message(MessageBody::Text(MessageText::new("hi").expect("valid")))),
            RoomEvent::MemberJoined { room_id, user: user.clone() },
            RoomEvent::MemberLeft { room_id, user: user.clone() },
            RoomEvent::RoomDeleted { room_id },
            RoomEvent::Typing { room_id, user: user.clone() },
            RoomEvent::Read { room_id, user: user.clone(), seq: Seq::new(9).expect("positive") },
            RoomEvent::Presence { user_id: user.id, online: true, rooms: vec![room_id, room_id] },
            RoomEvent::SessionEnded {
                user_id: user.id,
                session: SessionId(uuid::Uuid::now_v7()),
                reason: SessionEndReason::LoggedOut,
            },
            RoomEvent::SessionEnded {
                user_id: user.id,
                session: SessionId(uuid::Uuid::now_v7()),
                reason: SessionEndReason::TokenReused,
            },
        ];
        for event in events {
            let json = serde_json::to_string(&EventDto::from(&event)).expect("encodes");
            let back = serde_json::from_str::<EventDto>(&json).expect("parses").into_event().expect("decodes");
            assert_eq!(back, event);
        }
    }

    #[test]
    fn an_unknown_event_type_is_refused() {
        assert!(serde_json::from_str::<EventDto>(r#"{"type":"from_the_future"}"#).is_err());
    }
}
