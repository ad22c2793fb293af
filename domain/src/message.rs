//! Messages: time-ordered ids, per-room sequence numbers, and validated bodies.

use crate::{is_forbidden_control, uuid_id, FileKind, FileMeta, RoomId, Timestamp, UserId, Username};

uuid_id!(
    /// Identifies a message; UUIDv7, so ids sort by creation time.
    MessageId
);

/// A message's position in its room: starts at 1 and strictly increases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seq(u64);

impl Seq {
    pub const FIRST: Self = Self(1);

    pub fn new(n: u64) -> Option<Self> {
        (n >= 1).then_some(Self(n))
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The client's idempotency key for a send: 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientMsgId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientMsgIdError {
    #[error("client_msg_id must be 1 to 64 characters long, got {0}")]
    Length(usize),
    #[error("client_msg_id must not contain control characters")]
    ControlCharacter,
}

impl ClientMsgId {
    pub const MAX_CHARS: usize = 64;

    pub fn new(raw: &str) -> Result<Self, ClientMsgIdError> {
        let count = raw.chars().count();
        if count == 0 || count > Self::MAX_CHARS {
            return Err(ClientMsgIdError::Length(count));
        }
        if raw.chars().any(|c| is_forbidden_control(c, &[])) {
            return Err(ClientMsgIdError::ControlCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Message text: 1 to 4000 characters after trimming; newline and tab are the only controls allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageTextError {
    #[error("text must be 1 to 4000 characters long after trimming, got {0}")]
    Length(usize),
    #[error("text must not contain control characters other than newline and tab")]
    ControlCharacter,
}

impl MessageText {
    pub const MAX_CHARS: usize = 4000;

    pub fn new(raw: &str) -> Result<Self, MessageTextError> {
        let trimmed = raw.trim();
        let count = trimmed.chars().count();
        if count == 0 || count > Self::MAX_CHARS {
            return Err(MessageTextError::Length(count));
        }
        if trimmed.chars().any(|c| is_forbidden_control(c, &['\n', '\t'])) {
            return Err(MessageTextError::ControlCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageBody {
    Text(MessageText),
    File(FileMeta),
}

/// What a client shows: text, an image, or another file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Image,
    File,
}

impl MessageKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::File => "file",
        }
    }
}

impl MessageBody {
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::Text(_) => MessageKind::Text,
            Self::File(meta) if meta.kind == FileKind::Image => MessageKind::Image,
            Self::File(_) => MessageKind::File,
        }
    }
}

/// Who sent a message; the username is kept so history renders without a user lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub id: UserId,
    pub username: Username,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub room_id: RoomId,
    pub seq: Seq,
    pub sender: Sender,
    pub body: MessageBody,
    pub sent_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_is_trimmed_and_keeps_newlines_and_tabs() {
        let text = MessageText::new("  hello\n\tworld  ").unwrap();
        assert_eq!(text.as_str(), "hello\n\tworld");
    }

    #[test]
    fn empty_or_blank_text_is_refused() {
        assert_eq!(MessageText::new(""), Err(MessageTextError::Length(0)));
        assert_eq!(MessageText::new(" \n\t "), Err(MessageTextError::Length(0)));
    }

    #[test]
    fn text_is_at_most_four_thousand_characters() {
        assert!(MessageText::new(&"ж".repeat(4000)).is_ok());
        assert_eq!(MessageText::new(&"ж".repeat(4001)), Err(MessageTextError::Length(4001)));
    }

    #[test]
    fn text_refuses_other_control_characters() {
        assert_eq!(MessageText::new("a\u{0}b"), Err(MessageTextError::ControlCharacter));
        assert_eq!(MessageText::new("a\u{1b}[31mb"), Err(MessageTextError::ControlCharacter));
        assert_eq!(MessageText::new("a\rb"), Err(MessageTextError::ControlCharacter));
    }

    #[test]
    fn client_msg_ids_are_one_to_sixty_four_characters() {
        assert!(ClientMsgId::new("c-1").is_ok());
        assert_eq!(ClientMsgId::new(""), Err(ClientMsgIdError::Length(0)));
        assert_eq!(ClientMsgId::new(&"c".repeat(65)), Err(ClientMsgIdError::Length(65)));
        assert_eq!(ClientMsgId::new("a\u{0}"), Err(ClientMsgIdError::ControlCharacter));
    }

    #[test]
    fn seqs_start_at_one_and_increase() {
        assert_eq!(Seq::new(0), None);
        assert_eq!(Seq::FIRST.next().get(), 2);
        assert!(Seq::FIRST < Seq::FIRST.next());
    }

    proptest! {
        #[test]
        fn accepted_texts_are_trimmed_bounded_and_clean(raw in "\\PC{0,50}|[\\x00-\\x1f ab]{0,20}") {
            if let Ok(text) = MessageText::new(&raw) {
                let s = text.as_str();
                prop_assert_eq!(s, s.trim());
                prop_assert!((1..=4000).contains(&s.chars().count()));
                prop_assert!(s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'));
            }
        }

        #[test]
        fn accepted_client_msg_ids_are_bounded(raw in "\\PC{0,70}") {
            if let Ok(id) = ClientMsgId::new(&raw) {
                prop_assert!((1..=64).contains(&id.as_str().chars().count()));
            }
        }
    }
}
