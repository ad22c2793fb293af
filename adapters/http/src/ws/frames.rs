//! The socket protocol's frames: parsing client text and binary frames, and shaping server frames.

use serde::{Deserialize, Serialize};

use domain::Message;

use crate::dto::{ChangeDto, ChangeKind, MessageDto};

/// Largest header JSON in a binary `send_file` frame.
pub const MAX_FILE_HEADER_BYTES: usize = 4096;

/// What a client may send in a text frame.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// A text message, or a file uploaded before with `POST /files`: exactly one of the two.
    Send {
        room_id: String,
        client_msg_id: String,
        text: Option<String>,
        file_id: Option<String>,
    },
    /// New text for the caller's text message `seq`.
    Edit {
        room_id: String,
        client_msg_id: String,
        seq: u64,
        text: String,
    },
    /// Deletes message `seq`: the caller's own, or any in a room the caller owns.
    Delete {
        room_id: String,
        client_msg_id: String,
        seq: u64,
    },
    React {
        room_id: String,
        client_msg_id: String,
        seq: u64,
        emoji: String,
    },
    Unreact {
        room_id: String,
        client_msg_id: String,
        seq: u64,
        emoji: String,
    },
    Sync {
        room_id: String,
        after_seq: u64,
    },
    /// "I have everything up to this seq" for each room: what `sync` does, for many rooms.
    Resume {
        rooms: std::collections::BTreeMap<String, u64>,
    },
    Typing {
        room_id: String,
    },
    /// "I have read this room up to this seq": moves the read marker, as `POST /rooms/{id}/read`.
    Read {
        room_id: String,
        seq: u64,
    },
    Ping,
}

/// The JSON header of a binary frame.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BinaryHeader {
    SendFile { room_id: String, client_msg_id: String, name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid frame: {0}")]
    Invalid(String),
    #[error("binary frame is shorter than its 4-byte header length")]
    Truncated,
    #[error("binary frame header is {0} bytes; at most {MAX_FILE_HEADER_BYTES} are allowed")]
    HeaderTooLarge(usize),
}

/// Parses a text frame. Unknown types, missing fields and bad JSON are all `Invalid`.
pub fn parse_text(raw: &str) -> Result<ClientFrame, FrameError> {
    serde_json::from_str(raw).map_err(|e| FrameError::Invalid(e.to_string()))
}

/// Splits a binary frame `[u32 BE header length][header JSON][file bytes]`.
pub fn parse_binary(raw: &[u8]) -> Result<(BinaryHeader, &[u8]), FrameError> {
    let (len_bytes, rest) = raw.split_first_chunk::<4>().ok_or(FrameError::Truncated)?;
    let header_len = u32::from_be_bytes(*len_bytes) as usize;
    if header_len > MAX_FILE_HEADER_BYTES {
        return Err(FrameError::HeaderTooLarge(header_len));
    }
    if rest.len() < header_len {
        return Err(FrameError::Truncated);
    }
    let (header, body) = rest.split_at(header_len);
    let header = serde_json::from_slice(header).map_err(|e| FrameError::Invalid(e.to_string()))?;
    Ok((header, body))
}

/// Builds a binary `send_file` frame; clients and tests use the same layout.
pub fn encode_binary(header_json: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + header_json.len() + body.len());
    out.extend_from_slice(&u32::try_from(header_json.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(header_json.as_bytes());
    out.extend_from_slice(body);
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct UserRef {
    pub id: String,
    pub username: String,
}

/// Everything the server sends, as `{"type": ..., ...}`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Ready {
        user: UserRef,
        connection_id: String,
    },
    Ack {
        client_msg_id: &'a str,
        /// The message sent, or the message as a change left it.
        message: &'a MessageDto,
        /// The seq of the change entry an `edit`, `delete`, `react` or `unreact` stored; absent
        /// for a `send`, and for a reaction that was already there (or already gone).
        #[serde(skip_serializing_if = "Option::is_none")]
        change_seq: Option<u64>,
    },
    Message {
        message: &'a MessageDto,
    },
    MessageEdited {
        #[serde(flatten)]
        change: &'a ChangeDto,
    },
    MessageDeleted {
        #[serde(flatten)]
        change: &'a ChangeDto,
    },
    ReactionAdded {
        #[serde(flatten)]
        change: &'a ChangeDto,
    },
    ReactionRemoved {
        #[serde(flatten)]
        change: &'a ChangeDto,
    },
    Synced {
        room_id: String,
        last_seq: u64,
        has_more: bool,
    },
    Typing {
        room_id: String,
        user: UserRef,
    },
    MemberJoined {
        room_id: String,
        user: UserRef,
    },
    MemberLeft {
        room_id: String,
        user: UserRef,
    },
    RoomDeleted {
        room_id: String,
    },
    /// A member read the room up to `seq` (sent only for users who send read receipts).
    Read {
        room_id: String,
        user: UserRef,
        seq: u64,
    },
    /// A room's presence changes over one window, net: each user at most once, in one list.
    Presence {
        room_id: String,
        online: Vec<String>,
        offline: Vec<String>,
    },
    Pong,
    Error {
        code: &'a str,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<&'a str>,
        /// The room a `sync` or `typing` was about, so a client with several in flight knows which.
        #[serde(skip_serializing_if = "Option::is_none")]
        room_id: Option<&'a str>,
        /// With `history_truncated`: the oldest seq the room still has.
        #[serde(skip_serializing_if = "Option::is_none")]
        oldest_seq: Option<u64>,
    },
}

impl ServerFrame<'_> {
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail; an empty object would be a visible bug.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// The frame of a log entry, live or replayed: `message` for a message, and for a change entry
/// the frame its kind names (`message_edited`, `message_deleted`, `reaction_added`,
/// `reaction_removed`).
pub fn entry_json(entry: &Message) -> String {
    match ChangeDto::of(entry) {
        Some((kind, change)) => {
            let change = &change;
            match kind {
                ChangeKind::Edited => ServerFrame::MessageEdited { change },
                ChangeKind::Deleted => ServerFrame::MessageDeleted { change },
                ChangeKind::ReactionAdded => ServerFrame::ReactionAdded { change },
                ChangeKind::ReactionRemoved => ServerFrame::ReactionRemoved { change },
            }
            .to_json()
        }
        None => ServerFrame::Message { message: &MessageDto::from(entry) }.to_json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_send_frame_parses_with_all_fields() {
        let frame = parse_text(r#"{"type":"send","room_id":"r","client_msg_id":"c1","text":"hi"}"#).unwrap();
        let expected = ClientFrame::Send {
            room_id: "r".into(),
            client_msg_id: "c1".into(),
            text: Some("hi".into()),
            file_id: None,
        };
        assert_eq!(frame, expected);
    }

    #[test]
    fn a_read_frame_parses_and_needs_a_seq() {
        let frame = parse_text(r#"{"type":"read","room_id":"r","seq":7}"#).unwrap();
        assert_eq!(frame, ClientFrame::Read { room_id: "r".into(), seq: 7 });
        assert!(parse_text(r#"{"type":"read","room_id":"r"}"#).is_err());
        assert!(parse_text(r#"{"type":"read","room_id":"r","seq":-1}"#).is_err());
    }

    #[test]
    fn unknown_types_missing_fields_and_bad_json_are_invalid() {
        for raw in
            [r#"{"type":"shout"}"#, r#"{"type":"send","room_id":"r","text":"hi"}"#, "not json", r#"{"room_id":"r"}"#]
        {
            assert!(matches!(parse_text(raw), Err(FrameError::Invalid(_))), "{raw}");
        }
    }

    #[test]
    fn a_binary_frame_splits_into_header_and_bytes() {
        let raw = encode_binary(r#"{"type":"send_file","room_id":"r","client_msg_id":"c","name":"a.png"}"#, b"\x89PNG");
        let (header, body) = parse_binary(&raw).unwrap();
        assert_eq!(
            header,
            BinaryHeader::SendFile { room_id: "r".into(), client_msg_id: "c".into(), name: "a.png".into() }
        );
        assert_eq!(body, b"\x89PNG");
    }

    #[test]
    fn short_or_oversized_binary_headers_are_refused() {
        assert_eq!(parse_binary(&[0, 0]), Err(FrameError::Truncated));
        assert_eq!(parse_binary(&[0, 0, 0, 10, b'{']), Err(FrameError::Truncated));
        assert_eq!(parse_binary(&[0, 1, 0, 0]), Err(FrameError::HeaderTooLarge(65536)));
    }

    #[test]
    fn server_frames_are_tagged_by_type() {
        let json = ServerFrame::Error {
            code: "bad_request",
            message: "x".into(),
            client_msg_id: None,
            room_id: None,
            oldest_seq: None,
        }
        .to_json();
        assert_eq!(json, r#"{"type":"error","code":"bad_request","message":"x"}"#);
        assert_eq!(ServerFrame::Pong.to_json(), r#"{"type":"pong"}"#);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics_the_parser(raw in "\\PC*") {
            let _ = parse_text(&raw);
        }

        #[test]
        fn arbitrary_json_like_text_never_panics_the_parser(raw in r#"\{"type":"(send|sync|typing|read|ping|edit|delete|react|unreact)"(,"[a-z_]{1,12}":("[^"]{0,8}"|[0-9]{1,20}|null|\[\]))*\}"#) {
            let _ = parse_text(&raw);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_binary_parser(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_binary(&raw);
        }
    }
}
