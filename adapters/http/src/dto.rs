//! JSON shapes shared by the REST API and the WebSocket protocol, and the shared empty answer.

use application::accounts::TokenPair;
use application::rooms::{RoomDetails, RoomList};
use chrono::SecondsFormat;
use domain::{Change, FileMeta, Message, MessageBody, MessageKind, Timestamp, User};
use poem_openapi::{ApiResponse, Enum, Object};
use secrecy::ExposeSecret;
use serde::Serialize;

/// The answer of every route that succeeds with nothing to say.
#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

/// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-24T20:45:30.123Z`.
pub fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, Object, Serialize)]
pub struct UserDto {
    pub id: String,
    pub username: String,
    pub created_at: String,
}

impl From<&User> for UserDto {
    fn from(u: &User) -> Self {
        Self { id: u.id.to_string(), username: u.username.to_string(), created_at: rfc3339(u.created_at) }
    }
}

#[derive(Debug, Clone, Object, Serialize)]
pub struct TokenPairDto {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl From<TokenPair> for TokenPairDto {
    fn from(p: TokenPair) -> Self {
        Self {
            access_token: p.access_token,
            refresh_token: p.refresh_token.expose_secret().to_owned(),
            token_type: "Bearer".to_owned(),
            expires_in: p.expires_in_secs,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, serde::Deserialize)]
#[oai(rename_all = "lowercase", rename = "Visibility")]
#[serde(rename_all = "lowercase")]
pub enum VisibilityDto {
    Public,
    Private,
}

impl From<VisibilityDto> for domain::Visibility {
    fn from(v: VisibilityDto) -> Self {
        match v {
            VisibilityDto::Public => Self::Public,
            VisibilityDto::Private => Self::Private,
        }
    }
}

impl From<domain::Visibility> for VisibilityDto {
    fn from(v: domain::Visibility) -> Self {
        match v {
            domain::Visibility::Public => Self::Public,
            domain::Visibility::Private => Self::Private,
        }
    }
}

#[derive(Debug, Clone, Object, Serialize)]
pub struct MemberDto {
    pub user_id: String,
    pub username: String,
    /// `owner` or `member`.
    pub role: String,
    pub joined_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "lowercase", rename = "RoomKind")]
#[serde(rename_all = "lowercase")]
pub enum RoomKindDto {
    /// Members come and go.
    Group,
    /// Two users, for good: nobody joins, is invited, leaves or is removed.
    Direct,
}

#[derive(Debug, Clone, Object, Serialize)]
pub struct RoomDto {
    pub id: String,
    /// In a direct room, the other user's name.
    pub name: String,
    pub visibility: VisibilityDto,
    pub kind: RoomKindDto,
    /// In a direct room, the other user.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_with: Option<SenderDto>,
    pub owner_id: String,
    pub members: Vec<MemberDto>,
    pub created_at: String,
    /// The seq of the newest message, 0 when there is none.
    pub last_seq: u64,
    /// In your room list: the highest seq you marked read, 0 before any.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_read_seq: Option<u64>,
    /// In your room list: messages past `last_read_seq`, at most 1000 (show "1000+").
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread_count: Option<u64>,
    /// In your room list: the newest message you may still read; absent when there is none.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<MessageDto>,
}

impl From<&RoomDetails> for RoomDto {
    fn from(d: &RoomDetails) -> Self {
        let room = &d.room;
        let reading = d.reading.as_ref();
        Self {
            id: room.id().to_string(),
            name: d
                .direct_with
                .as_ref()
                .map_or_else(|| room.name().as_str().to_owned(), |peer| peer.username.to_string()),
            kind: match room.kind() {
                domain::RoomKind::Group => RoomKindDto::Group,
                domain::RoomKind::Direct => RoomKindDto::Direct,
            },
            direct_with: d
                .direct_with
                .as_ref()
                .map(|peer| SenderDto { id: peer.id.to_string(), username: peer.username.to_string() }),
            last_read_seq: reading.map(|r| r.marker.get()),
            unread_count: reading.map(|r| r.unread),
            last_message: reading.and_then(|r| r.last_message.as_ref()).map(MessageDto::from),
            visibility: room.visibility().into(),
            owner_id: room.owner().to_string(),
            members: room
                .members()
                .iter()
                .map(|m| MemberDto {
                    user_id: m.user_id.to_string(),
                    username: d.usernames.get(&m.user_id).map(ToString::to_string).unwrap_or_default(),
                    role: m.role.as_str().to_owned(),
                    joined_at: rfc3339(m.joined_at),
                })
                .collect(),
            created_at: rfc3339(room.created_at()),
            last_seq: d.last_seq,
        }
    }
}

#[derive(Debug, Clone, Object, Serialize)]
pub struct RoomPageDto {
    pub items: Vec<RoomDto>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl From<&RoomList> for RoomPageDto {
    fn from(list: &RoomList) -> Self {
        Self {
            items: list.items.iter().map(RoomDto::from).collect(),
            next_cursor: list.next_cursor.map(|c| c.to_string()),
        }
    }
}

#[derive(Debug, Clone, Object, Serialize)]
pub struct SenderDto {
    pub id: String,
    pub username: String,
}

#[derive(Debug, Clone, Object, Serialize)]
pub struct FileDto {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// Where members download the bytes (bearer header or `access_token` query parameter).
    pub url: String,
    pub expires_at: String,
}

impl FileDto {
    pub fn new(meta: &FileMeta) -> Self {
        Self {
            id: meta.id.to_string(),
            name: meta.name.as_str().to_owned(),
            size: meta.size,
            content_type: meta.content_type.clone(),
            url: format!("/files/{}", meta.id),
            expires_at: rfc3339(meta.expires_at),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "lowercase", rename = "MessageKind")]
#[serde(rename_all = "lowercase")]
pub enum MessageKindDto {
    Text,
    Image,
    File,
}

/// One emoji on a message: who reacted with it, earliest first.
#[derive(Debug, Clone, Object, Serialize)]
pub struct ReactionDto {
    pub emoji: String,
    /// How many users reacted with it: the length of `users`.
    pub count: u64,
    /// The ids of the users who reacted with it, earliest first.
    pub users: Vec<String>,
}

/// A chat message, as both the REST API and the socket protocol show it.
#[derive(Debug, Clone, Object, Serialize)]
pub struct MessageDto {
    pub id: String,
    pub room_id: String,
    pub seq: u64,
    pub sender: SenderDto,
    pub kind: MessageKindDto,
    /// The current text of a text message: the edited one once edited; absent once deleted.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Absent once deleted.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileDto>,
    pub sent_at: String,
    /// When the text was last edited; absent when never.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    /// When the message was deleted: it is a tombstone, with no `text` and no `file`.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// Each emoji reacted with, in the order of its first reaction; absent when none.
    #[oai(skip_serializing_if_is_empty)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionDto>,
}

/// How clients show a message of this kind; a change entry is never shown as a message.
fn kind_dto(kind: MessageKind) -> MessageKindDto {
    match kind {
        MessageKind::Image => MessageKindDto::Image,
        MessageKind::File => MessageKindDto::File,
        MessageKind::Text | MessageKind::Edit | MessageKind::Delete | MessageKind::Reaction => MessageKindDto::Text,
    }
}

impl From<&Message> for MessageDto {
    fn from(m: &Message) -> Self {
        let (text, file) = match &m.body {
            MessageBody::Text(t) => (Some(t.as_str().to_owned()), None),
            MessageBody::File(meta) => (None, Some(FileDto::new(meta))),
            MessageBody::Removed(_) | MessageBody::Change(_) => (None, None),
        };
        Self {
            id: m.id.to_string(),
            room_id: m.room_id.to_string(),
            seq: m.seq.get(),
            sender: SenderDto { id: m.sender.id.to_string(), username: m.sender.username.to_string() },
            kind: kind_dto(m.body.kind()),
            text,
            file,
            sent_at: rfc3339(m.sent_at),
            edited_at: m.state.edited_at.map(rfc3339),
            deleted_at: m.state.deleted_at.map(rfc3339),
            reactions: m
                .reactions()
                .iter()
                .map(|r| ReactionDto {
                    emoji: r.emoji.to_string(),
                    count: r.count() as u64,
                    users: r.users.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        }
    }
}

/// A page of search results.
#[derive(Debug, Clone, Object, Serialize)]
pub struct SearchPageDto {
    /// Newest first.
    pub items: Vec<MessageDto>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A change entry as the socket replays it: which message of the room it changes, who made it,
/// when, and how. The frame's `type` says what it is: `message_edited`, `message_deleted`,
/// `reaction_added` or `reaction_removed`.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeDto {
    pub room_id: String,
    /// The change's own seq, which `sync` and `resume` count as any message's.
    pub seq: u64,
    /// The seq of the message it changes.
    pub target_seq: u64,
    /// Who made the change.
    pub user: SenderDto,
    /// When it was made: `edited_at` or `deleted_at` of the message from then on.
    pub at: String,
    /// An edit's new text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A reaction's emoji.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
}

/// Which change a `ChangeDto` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Edited,
    Deleted,
    ReactionAdded,
    ReactionRemoved,
}

impl ChangeDto {
    /// What a change entry is, and its shape; `None` for a message.
    pub fn of(m: &Message) -> Option<(ChangeKind, Self)> {
        let change = m.body.change()?;
        let mut dto = Self {
            room_id: m.room_id.to_string(),
            seq: m.seq.get(),
            target_seq: change.target().get(),
            user: SenderDto { id: m.sender.id.to_string(), username: m.sender.username.to_string() },
            at: rfc3339(m.sent_at),
            text: None,
            emoji: None,
        };
        let kind = match change {
            Change::Edit { text, .. } => {
                dto.text = Some(text.as_str().to_owned());
                ChangeKind::Edited
            }
            Change::Delete { .. } => ChangeKind::Deleted,
            Change::React { emoji, added, .. } => {
                dto.emoji = Some(emoji.as_str().to_owned());
                if *added {
                    ChangeKind::ReactionAdded
                } else {
                    ChangeKind::ReactionRemoved
                }
            }
        };
        Some((kind, dto))
    }
}

#[derive(Debug, Clone, Object, Serialize)]
pub struct MessagePageDto {
    /// Ascending by seq.
    pub items: Vec<MessageDto>,
    /// More unexpired messages exist in the paging direction: expired ones, even those not purged
    /// yet, never count, nor take a place in `items`.
    pub has_more: bool,
}
