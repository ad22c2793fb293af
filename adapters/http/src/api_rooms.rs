//! Room routes: create, list, view, join, leave, members, delete, direct rooms, read markers,
//! message history, search, and editing, deleting and reacting to messages.

use application::accounts::UserRef;
use application::messaging::{ChangeRequest, HistoryQuery, Wanted, HISTORY_MAX};
use application::rooms::{DirectError, InviteError, NewRoom, PageSize};
use application::search::{SearchRequest, SEARCH_MAX};
use domain::{ClientMsgId, Emoji, MessageId, MessageText, RoomId, RoomName, SearchQuery, User, UserId, Username};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use crate::bearer::BearerAuth;
use crate::declared::{ClientMsgIdRule, Declared, EmojiRule, Id, MessageTextRule, RoomNameRule, UsernameRule};
use crate::dto::NoContent;
use crate::dto::{MessageDto, MessagePageDto, RoomDto, RoomPageDto, SearchPageDto, VisibilityDto};
use crate::error::status::{AUTHED, BAD_REQUEST, CONFLICT, FORBIDDEN, JSON_BODY, NOT_FOUND, UNAVAILABLE};
use crate::error::{ApiError, Failure, Problem};
use crate::state::AppState;
use crate::strict::StrictJson;
use poem::web::Data;

#[derive(Tags)]
enum Tag {
    /// Rooms and membership.
    Rooms,
    /// Message history, and editing, deleting and reacting to messages.
    Messages,
}

const ROOMS_PAGE_MAX: u32 = 100;
const ROOMS_PAGE_DEFAULT: u32 = 20;
const HISTORY_DEFAULT: u32 = 50;
const SEARCH_DEFAULT: u32 = 20;

#[derive(Debug, Object, serde::Deserialize)]
pub struct DirectRequest {
    /// The id of the other user; give this or `username`.
    #[oai(nullable)]
    pub user_id: Option<Id>,
    /// The name of the other user; give this or `user_id`.
    #[oai(nullable)]
    pub username: Option<Declared<UsernameRule>>,
}

#[derive(ApiResponse)]
pub enum DirectResponse {
    /// The direct room already existed.
    #[oai(status = 200)]
    Ok(Json<RoomDto>),
    /// The direct room was opened by this request.
    #[oai(status = 201)]
    Created(Json<RoomDto>),
}

#[derive(Debug, Object, serde::Deserialize)]
pub struct ReadRequest {
    /// The highest seq read: at most the room's `last_seq`. A lower seq than the one stored
    /// changes nothing.
    pub seq: u64,
}

/// Where your read marker stands.
#[derive(Debug, Object, serde::Serialize)]
pub struct ReadMarkerDto {
    pub room_id: String,
    /// Never lower than before the request.
    pub last_read_seq: u64,
}

#[derive(ApiResponse)]
pub enum ReadResponse {
    /// The marker, moved forward or where it already was.
    #[oai(status = 200)]
    Ok(Json<ReadMarkerDto>),
}

#[derive(ApiResponse)]
pub enum SearchResponse {
    /// Matching messages, newest first.
    #[oai(status = 200)]
    Ok(Json<SearchPageDto>),
}

#[derive(Debug, Object, serde::Deserialize)]
pub struct CreateRoomRequest {
    /// 1 to 64 characters after trimming; no control characters.
    pub name: Declared<RoomNameRule>,
    pub visibility: VisibilityDto,
    /// Users to add as members right away (at most 50); `null` or absent for none.
    #[oai(validator(max_items = 50), nullable)]
    pub member_ids: Option<Vec<Id>>,
}

/// Who in a room is online now, on any socket node.
#[derive(Debug, Object, serde::Serialize)]
pub struct PresenceDto {
    pub room_id: String,
    /// Ids of the members with at least one open socket, the caller included when connected.
    pub online: Vec<String>,
}

#[derive(ApiResponse)]
pub enum PresenceResponse {
    /// The room's online members.
    #[oai(status = 200)]
    Ok(Json<PresenceDto>),
}

#[derive(Debug, Object, serde::Deserialize)]
pub struct InviteRequest {
    /// The id of the user to add; give this or `username`.
    #[oai(nullable)]
    pub user_id: Option<Id>,
    /// The name of the user to add; give this or `user_id`.
    #[oai(nullable)]
    pub username: Option<Declared<UsernameRule>>,
}

#[derive(Debug, Object, serde::Deserialize)]
pub struct EditRequest {
    /// The new text: 1 to 4000 characters after trimming; newline and tab are the only control
    /// characters allowed.
    pub text: Declared<MessageTextRule>,
    /// Makes a retried edit store nothing twice, as `client_msg_id` does for a send; optional.
    #[oai(nullable)]
    pub client_msg_id: Option<Declared<ClientMsgIdRule>>,
}

#[derive(ApiResponse)]
pub enum MessageResponse {
    /// The message as the change left it.
    #[oai(status = 200)]
    Ok(Json<MessageDto>),
}

#[derive(ApiResponse)]
pub enum RoomCreated {
    /// The room, with its members.
    #[oai(status = 201)]
    Created(Json<RoomDto>),
}

#[derive(ApiResponse)]
pub enum RoomResponse {
    /// The room, with its members.
    #[oai(status = 200)]
    Ok(Json<RoomDto>),
}

#[derive(ApiResponse)]
pub enum RoomPageResponse {
    /// A page of rooms ordered by creation.
    #[oai(status = 200)]
    Ok(Json<RoomPageDto>),
}

#[derive(ApiResponse)]
pub enum MessagePageResponse {
    /// Messages in ascending seq.
    #[oai(status = 200)]
    Ok(Json<MessagePageDto>),
}

pub struct RoomsApi;

#[OpenApi]
impl RoomsApi {
    /// Create a room
    #[oai(path = "/rooms", method = "post", tag = "Tag::Rooms")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: StrictJson<CreateRoomRequest>,
    ) -> Result<RoomCreated, Failure<{ AUTHED | JSON_BODY | CONFLICT }>> {
        let name =
            RoomName::new(&body.name).map_err(|e| ApiError::bad_request("invalid_room_name", format!("name: {e}")))?;
        let raw_ids = body.0.member_ids.unwrap_or_default();
        let bad: Vec<&Id> = raw_ids.iter().filter(|s| s.parse::<UserId>().is_err()).collect();
        if !bad.is_empty() {
            let listed = bad.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            return Err(ApiError::bad_request("unknown_members", format!("member_ids: not user ids: {listed}")).into());
        }
        let member_ids = raw_ids.iter().filter_map(|s| s.parse().ok()).collect();
        let request = NewRoom { name, visibility: body.0.visibility.into(), member_ids };
        let details = state.rooms.create(&auth.0.user, request).await?;
        Ok(RoomCreated::Created(Json(RoomDto::from(&details))))
    }

    /// List the rooms you belong to
    #[oai(path = "/rooms", method = "get", tag = "Tag::Rooms")]
    async fn list_mine(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// 1 to 100, default 20.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
    ) -> Result<RoomPageResponse, Failure<{ AUTHED | BAD_REQUEST }>> {
        let after = parse_cursor(cursor.0.as_deref())?;
        let size = page_size(limit.0, ROOMS_PAGE_DEFAULT, ROOMS_PAGE_MAX)?;
        let list = state.rooms.list_mine(&auth.0.user, after, size).await?;
        Ok(RoomPageResponse::Ok(Json(RoomPageDto::from(&list))))
    }

    /// List public rooms
    #[oai(path = "/rooms/public", method = "get", tag = "Tag::Rooms")]
    async fn list_public(
        &self,
        state: Data<&AppState>,
        _auth: BearerAuth,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// 1 to 100, default 20.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
    ) -> Result<RoomPageResponse, Failure<{ AUTHED | BAD_REQUEST }>> {
        let after = parse_cursor(cursor.0.as_deref())?;
        let size = page_size(limit.0, ROOMS_PAGE_DEFAULT, ROOMS_PAGE_MAX)?;
        let list = state.rooms.list_public(after, size).await?;
        Ok(RoomPageResponse::Ok(Json(RoomPageDto::from(&list))))
    }

    /// Get a room
    ///
    /// Private rooms are visible to their members only; to anyone else they do not exist.
    #[oai(path = "/rooms/:room_id", method = "get", tag = "Tag::Rooms")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
    ) -> Result<RoomResponse, Failure<{ AUTHED | NOT_FOUND }>> {
        let room_id = parse_room(&room_id)?;
        let details = state.rooms.get(&auth.0.user, room_id).await?;
        Ok(RoomResponse::Ok(Json(RoomDto::from(&details))))
    }

    /// Join a public room
    #[oai(path = "/rooms/:room_id/join", method = "post", tag = "Tag::Rooms")]
    async fn join(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
    ) -> Result<RoomResponse, Failure<{ AUTHED | NOT_FOUND | FORBIDDEN | CONFLICT }>> {
        let room_id = parse_room(&room_id)?;
        let details = state.rooms.join(&auth.0.user, room_id).await?;
        Ok(RoomResponse::Ok(Json(RoomDto::from(&details))))
    }

    /// Leave a room
    ///
    /// An owner who leaves hands the room to the longest-standing member; the last member out
    /// deletes it.
    #[oai(path = "/rooms/:room_id/leave", method = "post", tag = "Tag::Rooms")]
    async fn leave(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
    ) -> Result<NoContent, Failure<{ AUTHED | NOT_FOUND | CONFLICT }>> {
        let room_id = parse_room(&room_id)?;
        state.rooms.leave(&auth.0.user, room_id).await?;
        Ok(NoContent::NoContent)
    }

    /// Add a member (any member may invite), by `user_id` or by `username`
    #[oai(path = "/rooms/:room_id/members", method = "post", tag = "Tag::Rooms")]
    async fn invite(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
        body: StrictJson<InviteRequest>,
    ) -> Result<RoomCreated, Failure<{ AUTHED | JSON_BODY | NOT_FOUND | CONFLICT }>> {
        let room_id = parse_room(&room_id)?;
        let invitee = match (&body.user_id, &body.username) {
            (Some(id), None) => UserRef::Id(parse_user(id)?),
            // A name nobody can have is nobody's.
            (None, Some(name)) => {
                UserRef::Name(Username::new(name).map_err(|_| InviteError::UnknownUser { field: "username" })?)
            }
            _ => {
                return Err(ApiError::bad_request("invalid_request", "give exactly one of user_id and username").into())
            }
        };
        let details = state.rooms.invite(&auth.0.user, room_id, invitee).await?;
        Ok(RoomCreated::Created(Json(RoomDto::from(&details))))
    }

    /// Who in the room is online now
    ///
    /// The members with an open socket on any node: what a client shows on connecting, before
    /// `presence` frames tell it of changes. Members only.
    #[oai(path = "/rooms/:room_id/presence", method = "get", tag = "Tag::Rooms")]
    async fn presence(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
    ) -> Result<PresenceResponse, Failure<{ AUTHED | NOT_FOUND | FORBIDDEN }>> {
        let room = parse_room(&room_id)?;
        let online = state.presence.online_in(&auth.0.user, room).await?;
        let online = online.iter().map(ToString::to_string).collect();
        Ok(PresenceResponse::Ok(Json(PresenceDto { room_id: room.to_string(), online })))
    }

    /// Remove a member (owner only)
    #[oai(path = "/rooms/:room_id/members/:user_id", method = "delete", tag = "Tag::Rooms")]
    async fn remove_member(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
        user_id: Path<Id>,
    ) -> Result<NoContent, Failure<{ AUTHED | BAD_REQUEST | NOT_FOUND | FORBIDDEN | CONFLICT }>> {
        let room_id = parse_room(&room_id)?;
        let user_id = parse_user(&user_id)?;
        state.rooms.remove_member(&auth.0.user, room_id, user_id).await?;
        Ok(NoContent::NoContent)
    }

    /// Delete a room (owner only)
    #[oai(path = "/rooms/:room_id", method = "delete", tag = "Tag::Rooms")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
    ) -> Result<NoContent, Failure<{ AUTHED | NOT_FOUND | FORBIDDEN | CONFLICT }>> {
        let room_id = parse_room(&room_id)?;
        state.rooms.delete(&auth.0.user, room_id).await?;
        Ok(NoContent::NoContent)
    }

    /// Open a direct room with another user, by `user_id` or by `username`
    ///
    /// There is one direct room per pair of users, opened on first use (201) and returned as it
    /// is afterwards (200), whichever of the two asks. Nobody joins, is invited to, leaves or is
    /// removed from a direct room (409 `direct_room`).
    #[oai(path = "/dms", method = "post", tag = "Tag::Rooms")]
    async fn open_direct(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: StrictJson<DirectRequest>,
    ) -> Result<DirectResponse, Failure<{ AUTHED | JSON_BODY }>> {
        let other = match (&body.user_id, &body.username) {
            (Some(id), None) => UserRef::Id(parse_user(id)?),
            // A name nobody can have is nobody's.
            (None, Some(name)) => {
                UserRef::Name(Username::new(name).map_err(|_| DirectError::UnknownUser { field: "username" })?)
            }
            _ => {
                return Err(ApiError::bad_request("invalid_request", "give exactly one of user_id and username").into())
            }
        };
        let opened = state.rooms.open_direct(&auth.0.user, other).await?;
        let dto = Json(RoomDto::from(&opened.details));
        Ok(if opened.created { DirectResponse::Created(dto) } else { DirectResponse::Ok(dto) })
    }

    /// Mark a room read up to a seq
    ///
    /// Markers only move forward. The room's other members get a `read` event on the socket,
    /// unless you turned `send_read_receipts` off. The socket's `read` frame does the same.
    #[oai(path = "/rooms/:room_id/read", method = "post", tag = "Tag::Rooms")]
    async fn mark_read(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
        body: StrictJson<ReadRequest>,
    ) -> Result<ReadResponse, Failure<{ AUTHED | JSON_BODY | NOT_FOUND | FORBIDDEN }>> {
        let room = parse_room(&room_id)?;
        let marker = state.rooms.mark_read(&auth.0.user, room, body.seq).await?;
        Ok(ReadResponse::Ok(Json(ReadMarkerDto { room_id: room.to_string(), last_read_seq: marker.get() })))
    }

    /// Search the messages of your rooms
    ///
    /// Messages whose text holds every word of `q` (letters and digits; case and accents do not
    /// matter), in the rooms you belong to now, or in `room_id` only; newest first. Deleted and
    /// expired messages are never found. A message is found once archived (at once embedded,
    /// within the archive interval in the split deployment). 503 `search_unavailable` when the
    /// message store has no full-text index.
    #[oai(path = "/search", method = "get", tag = "Tag::Messages")]
    async fn search(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// 1 to 200 characters, 1 to 16 words.
        #[oai(validator(max_length = 200))]
        q: Query<String>,
        /// Only this room.
        room_id: Query<Option<String>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// 1 to 50, default 20.
        #[oai(validator(minimum(value = "1"), maximum(value = "50")))]
        limit: Query<Option<u32>>,
    ) -> Result<SearchResponse, Failure<{ AUTHED | BAD_REQUEST | NOT_FOUND | FORBIDDEN | UNAVAILABLE }>> {
        let query = SearchQuery::new(&q).map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
        let room = room_id.0.as_deref().map(parse_room).transpose()?;
        let before = cursor
            .0
            .as_deref()
            .map(|c| {
                c.parse::<MessageId>()
                    .map_err(|_| ApiError::bad_request("invalid_request", "cursor: not a cursor from this API"))
            })
            .transpose()?;
        let limit = page_size(limit.0, SEARCH_DEFAULT, SEARCH_MAX)?;
        let page = state.search.search(&auth.0.user, SearchRequest { query, room, before, limit }).await?;
        Ok(SearchResponse::Ok(Json(SearchPageDto {
            items: page.items.iter().map(MessageDto::from).collect(),
            next_cursor: page.next_cursor.map(|id| id.to_string()),
        })))
    }

    /// Page through a room's messages
    ///
    /// With neither `before` nor `after`, the newest `limit` messages. `before` pages backwards,
    /// `after` forwards. Items are always in ascending seq; `has_more` is about the paging
    /// direction. Members only.
    #[oai(path = "/rooms/:room_id/messages", method = "get", tag = "Tag::Messages")]
    async fn messages(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
        /// Only messages with a smaller seq.
        before: Query<Option<u64>>,
        /// Only messages with a greater seq.
        after: Query<Option<u64>>,
        /// 1 to 100, default 50.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
    ) -> Result<MessagePageResponse, Failure<{ AUTHED | BAD_REQUEST | NOT_FOUND | FORBIDDEN }>> {
        let room_id = parse_room(&room_id)?;
        let limit = page_size(limit.0, HISTORY_DEFAULT, HISTORY_MAX)?;
        let query = HistoryQuery { before: before.0, after: after.0, limit };
        let page = state.messaging.history(&auth.0.user, room_id, query).await?;
        Ok(MessagePageResponse::Ok(Json(MessagePageDto {
            items: page.items.iter().map(MessageDto::from).collect(),
            has_more: page.has_more,
        })))
    }

    /// Edit a message
    ///
    /// Gives your text message new text, within the edit window after sending (24 hours unless
    /// the server says otherwise: `edit_window_passed` after it). The edit is stored as an entry
    /// with a seq of its own, which every socket in the room gets as `message_edited`; history
    /// shows the new text and `edited_at`. `403` for someone else's message, `409` with
    /// `message_deleted` for a deleted one and `not_editable` for a file.
    #[oai(path = "/rooms/:room_id/messages/:seq", method = "patch", tag = "Tag::Messages")]
    async fn edit(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
        /// The seq of the message.
        #[oai(validator(minimum(value = "1")))]
        seq: Path<u64>,
        body: StrictJson<EditRequest>,
    ) -> Result<MessageResponse, Failure<{ AUTHED | JSON_BODY | NOT_FOUND | FORBIDDEN | CONFLICT }>> {
        let text =
            MessageText::new(&body.text).map_err(|e| ApiError::bad_request("invalid_request", format!("text: {e}")))?;
        let client_msg_id = body
            .0
            .client_msg_id
            .as_deref()
            .map(ClientMsgId::new)
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_request", format!("client_msg_id: {e}")))?;
        let changed = Self::change(&state, &auth.0.user, &room_id, seq.0, client_msg_id, Wanted::Edit(text)).await?;
        Ok(MessageResponse::Ok(Json(MessageDto::from(&changed.message))))
    }

    /// Delete a message
    ///
    /// Your own message, or any message of a room you own. It stays in history as a tombstone
    /// (`deleted_at`, no `text`, no `file`, no reactions), and every socket in the room gets
    /// `message_deleted`. A file it shared is deleted too: its download answers `410`. `409` with
    /// `message_deleted` when it already is.
    #[oai(path = "/rooms/:room_id/messages/:seq", method = "delete", tag = "Tag::Messages")]
    async fn delete_message(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
        /// The seq of the message.
        #[oai(validator(minimum(value = "1")))]
        seq: Path<u64>,
    ) -> Result<NoContent, Failure<{ AUTHED | BAD_REQUEST | NOT_FOUND | FORBIDDEN | CONFLICT }>> {
        Self::change(&state, &auth.0.user, &room_id, seq.0, None, Wanted::Delete).await?;
        Ok(NoContent::NoContent)
    }

    /// React to a message
    ///
    /// Adds your reaction `emoji` (one emoji sequence, 1 to 32 characters, percent-encoded in the
    /// path) to a message; nothing changes when it is there already. A message has at most 20
    /// different emojis: `409` with `too_many_reactions` past that. Every socket in the room gets
    /// `reaction_added`.
    #[oai(path = "/rooms/:room_id/messages/:seq/reactions/:emoji", method = "put", tag = "Tag::Messages")]
    async fn react(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
        /// The seq of the message.
        #[oai(validator(minimum(value = "1")))]
        seq: Path<u64>,
        emoji: Path<Declared<EmojiRule>>,
    ) -> Result<MessageResponse, Failure<{ AUTHED | BAD_REQUEST | NOT_FOUND | FORBIDDEN | CONFLICT }>> {
        let emoji = parse_emoji(&emoji)?;
        let what = Wanted::React { emoji, added: true };
        let changed = Self::change(&state, &auth.0.user, &room_id, seq.0, None, what).await?;
        Ok(MessageResponse::Ok(Json(MessageDto::from(&changed.message))))
    }

    /// Take back a reaction
    ///
    /// Removes your reaction `emoji` from a message; nothing changes when it is not there. Every
    /// socket in the room gets `reaction_removed`.
    #[oai(path = "/rooms/:room_id/messages/:seq/reactions/:emoji", method = "delete", tag = "Tag::Messages")]
    async fn unreact(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        room_id: Path<Id>,
        /// The seq of the message.
        #[oai(validator(minimum(value = "1")))]
        seq: Path<u64>,
        emoji: Path<Declared<EmojiRule>>,
    ) -> Result<MessageResponse, Failure<{ AUTHED | BAD_REQUEST | NOT_FOUND | FORBIDDEN | CONFLICT }>> {
        let emoji = parse_emoji(&emoji)?;
        let what = Wanted::React { emoji, added: false };
        let changed = Self::change(&state, &auth.0.user, &room_id, seq.0, None, what).await?;
        Ok(MessageResponse::Ok(Json(MessageDto::from(&changed.message))))
    }
}

impl RoomsApi {
    async fn change(
        state: &AppState,
        actor: &User,
        room_id: &str,
        seq: u64,
        client_msg_id: Option<ClientMsgId>,
        what: Wanted,
    ) -> Result<application::messaging::Changed, ApiError> {
        let room_id = parse_room(room_id)?;
        let request = ChangeRequest { room_id, seq, client_msg_id, what };
        Ok(state.messaging.change(actor, request).await?)
    }
}

fn parse_emoji(raw: &str) -> Result<Emoji, ApiError> {
    Emoji::new(raw).map_err(|e| ApiError::bad_request("invalid_emoji", format!("emoji: {e}")))
}

/// A room id that does not parse names no room.
fn parse_room(raw: &str) -> Result<RoomId, ApiError> {
    raw.parse().map_err(|_| Problem::room_not_found().into())
}

fn parse_user(raw: &str) -> Result<UserId, ApiError> {
    raw.parse().map_err(|_| ApiError::bad_request("invalid_request", "user_id: not a valid user id"))
}

fn parse_cursor(raw: Option<&str>) -> Result<Option<RoomId>, ApiError> {
    raw.map(|c| c.parse().map_err(|_| ApiError::bad_request("invalid_request", "cursor: not a cursor from this API")))
        .transpose()
}

fn page_size(raw: Option<u32>, default: u32, max: u32) -> Result<PageSize, ApiError> {
    PageSize::new(raw.unwrap_or(default), max)
        .ok_or_else(|| ApiError::bad_request("invalid_request", format!("limit: must be between 1 and {max}")))
}
