//! Room use cases: create, list (with unread counts), view, invite, join, leave, remove members,
//! delete; direct rooms; read markers.

use std::collections::HashMap;
use std::sync::Arc;

use crate::accounts::{find_user, UserRef};

use domain::{
    DirectPair, LeaveOutcome, MemberLimit, Message, ReadMarker, RetentionPolicy, Room, RoomError, RoomId, RoomName,
    Seq, Standing, User, UserId, Username, Visibility, UNREAD_CAP,
};

use crate::membership::MembershipCache;
use crate::ports::{
    Clock, EventBus, IdGenerator, InsertDirectError, MarkReadError, MemberAddError, MemberRemoveError, MessageArchive,
    MessageLog, RoomEvent, RoomPage, RoomRepository, RoomTail, SeqRange, TailQuery, UpdateRoomError, UserRepository,
    UserSummary,
};

/// How many optimistic-update attempts a change of owner makes before giving up.
const UPDATE_ATTEMPTS: usize = 8;

/// A page size: 1 to `max` items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    pub fn new(n: u32, max: u32) -> Option<Self> {
        (1..=max).contains(&n).then_some(Self(n))
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

/// A room as the API shows it: with member names and the last seq given out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomDetails {
    pub room: Room,
    pub usernames: HashMap<UserId, Username>,
    pub last_seq: u64,
    /// In a direct room, the other user, as the one asking sees it.
    pub direct_with: Option<UserSummary>,
    /// Where the one asking stands with the room's messages; in their own room list only.
    pub reading: Option<Reading>,
}

/// How far a member has read a room, and what is past that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub marker: ReadMarker,
    /// Messages past the marker, at most `UNREAD_CAP`.
    pub unread: u64,
    /// The newest message the member may still read (not expired).
    pub last_message: Option<Message>,
}

/// A direct room, and whether this call opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedDirect {
    pub details: RoomDetails,
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomList {
    pub items: Vec<RoomDetails>,
    pub next_cursor: Option<RoomId>,
}

/// A valid room creation request.
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub name: RoomName,
    pub visibility: Visibility,
    pub member_ids: Vec<UserId>,
}

impl NewRoom {
    /// At most this many members can be named at creation.
    pub const MAX_INITIAL_MEMBERS: usize = 50;
}

#[derive(Debug, thiserror::Error)]
pub enum CreateRoomError {
    #[error("at most {max} member ids may be given, got {got}")]
    TooManyMembers { max: usize, got: usize },
    #[error("unknown user ids: {}", join_ids(.0))]
    UnknownMembers(Vec<UserId>),
    #[error("the room would exceed its member limit of {0}")]
    Full(u32),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RoomAccessError {
    #[error("room not found")]
    NotFound,
    /// Leaving a direct room: its two users stay.
    #[error("a direct conversation cannot be left")]
    Direct,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("a direct conversation needs another user than yourself")]
    WithSelf,
    /// No such user; names the request field (`user_id` or `username`) that named them.
    #[error("user not found")]
    UnknownUser { field: &'static str },
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("room not found")]
    NotFound,
    #[error("you are not a member of this room")]
    Forbidden,
    #[error("seq: {0}")]
    BeyondLast(#[from] domain::ReadMarkerError),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("room not found")]
    NotFound,
    #[error("the room is private; members join by invitation")]
    Private,
    #[error("the room is full ({0} members)")]
    Full(u32),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("room not found")]
    NotFound,
    #[error("user not found")]
    /// No such user; names the request field (`user_id` or `username`) that named them.
    UnknownUser { field: &'static str },
    #[error("the user is already a member")]
    AlreadyMember,
    #[error("the room is full ({0} members)")]
    Full(u32),
    #[error("a direct conversation takes no other members")]
    Direct,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RemoveMemberError {
    #[error("room not found")]
    NotFound,
    #[error("only the owner may remove members")]
    Forbidden,
    #[error("the user is not a member")]
    NotMember,
    #[error("the owner cannot be removed")]
    CannotRemoveOwner,
    #[error("a direct conversation keeps its two users")]
    Direct,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteRoomError {
    #[error("room not found")]
    NotFound,
    #[error("only the owner may delete the room")]
    Forbidden,
    #[error("a direct conversation cannot be deleted")]
    Direct,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

fn join_ids(ids: &[UserId]) -> String {
    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Why an optimistic change of a room did not happen.
enum ChangeError<E> {
    Missing,
    Rule(E),
    Unknown(anyhow::Error),
}

#[derive(Clone)]
pub struct Rooms {
    rooms: Arc<dyn RoomRepository>,
    users: Arc<dyn UserRepository>,
    log: Arc<dyn MessageLog>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    member_limit: MemberLimit,
    /// This node's membership cache, told of every removal before the caller is answered.
    membership: Option<MembershipCache>,
    /// Where the room list counts unread messages the log no longer holds; none when the log
    /// holds every message (the embedded log is the archive).
    archive: Option<Arc<dyn MessageArchive>>,
    /// When set, expired messages are neither counted unread nor shown as a room's last message.
    retention: Option<RetentionPolicy>,
}

impl Rooms {
    pub fn new(
        rooms: Arc<dyn RoomRepository>,
        users: Arc<dyn UserRepository>,
        log: Arc<dyn MessageLog>,
        bus: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        member_limit: MemberLimit,
    ) -> Self {
        Self { rooms, users, log, bus, clock, ids, member_limit, membership: None, archive: None, retention: None }
    }

    /// Counts unread messages in `archive` too, past what the log holds.
    #[must_use]
    pub fn with_archive(self, archive: Arc<dyn MessageArchive>) -> Self {
        Self { archive: Some(archive), ..self }
    }

    /// Leaves messages past `retention` out of unread counts and last messages.
    #[must_use]
    pub fn with_retention(self, retention: RetentionPolicy) -> Self {
        Self { retention: Some(retention), ..self }
    }

    /// Clears `cache` of every membership this use case ends.
    #[must_use]
    pub fn with_membership_cache(self, cache: MembershipCache) -> Self {
        Self { membership: Some(cache), ..self }
    }

    /// Creates a room owned by `actor`, with the named users as members.
    ///
    /// # Errors
    /// `UnknownMembers` names every id that matches no user; nothing is created then.
    pub async fn create(&self, actor: &User, request: NewRoom) -> Result<RoomDetails, CreateRoomError> {
        let mut wanted: Vec<UserId> = request.member_ids.into_iter().filter(|id| *id != actor.id).collect();
        wanted.sort();
        wanted.dedup();
        if wanted.len() > NewRoom::MAX_INITIAL_MEMBERS {
            return Err(CreateRoomError::TooManyMembers { max: NewRoom::MAX_INITIAL_MEMBERS, got: wanted.len() });
        }
        let found = self.users.by_ids(&wanted).await?;
        let unknown: Vec<UserId> = wanted.iter().copied().filter(|id| !found.iter().any(|u| u.id == *id)).collect();
        if !unknown.is_empty() {
            return Err(CreateRoomError::UnknownMembers(unknown));
        }
        let now = self.clock.now();
        let id = RoomId::from_uuid(self.ids.new_id());
        let mut room = Room::create(id, request.name, request.visibility, actor.id, self.member_limit, now);
        for user in &found {
            room.add_member(user.id, now).map_err(|e| match e {
                RoomError::Full(limit) => CreateRoomError::Full(limit),
                other => CreateRoomError::Unknown(other.into()),
            })?;
        }
        self.rooms.insert(&room).await?;
        // Every member's live sockets follow the new room at once, on every node, as on an invite.
        self.announce(RoomEvent::MemberJoined { room_id: id, user: actor.into() }).await;
        for user in &found {
            self.announce(RoomEvent::MemberJoined { room_id: id, user: user.into() }).await;
        }
        Ok(self.details(room, actor.id).await?)
    }

    /// The one direct room of `actor` and `other`, opened on first use. Both opening it at once
    /// get the same room: the store keeps one per pair, and the loser reads the winner's.
    ///
    /// # Errors
    /// `WithSelf` for `actor` themselves, `UnknownUser` when `other` names nobody.
    pub async fn open_direct(&self, actor: &User, other: UserRef) -> Result<OpenedDirect, DirectError> {
        let user =
            find_user(self.users.as_ref(), &other).await?.ok_or(DirectError::UnknownUser { field: other.field() })?;
        let pair = DirectPair::new(actor.id, user.id).ok_or(DirectError::WithSelf)?;
        if let Some(room) = self.rooms.find_direct(pair).await? {
            return Ok(OpenedDirect { details: self.details(room, actor.id).await?, created: false });
        }
        let id = RoomId::from_uuid(self.ids.new_id());
        let room = Room::direct(id, actor.id, user.id, self.clock.now()).ok_or(DirectError::WithSelf)?;
        match self.rooms.insert_direct(&room).await {
            Ok(()) => {
                self.announce(RoomEvent::MemberJoined { room_id: id, user: actor.into() }).await;
                self.announce(RoomEvent::MemberJoined { room_id: id, user: (&user).into() }).await;
                Ok(OpenedDirect { details: self.details(room, actor.id).await?, created: true })
            }
            // The other side (or another device) opened it first: theirs is the one.
            Err(InsertDirectError::Duplicate) => {
                let winner = self.rooms.find_direct(pair).await?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "the direct room of {} and {} was refused as a duplicate, then not found",
                        actor.id,
                        user.id
                    )
                })?;
                Ok(OpenedDirect { details: self.details(winner, actor.id).await?, created: false })
            }
            Err(InsertDirectError::Unknown(e)) => Err(DirectError::Unknown(e)),
        }
    }

    /// Moves `actor`'s read marker in `room_id` forward to `seq`; a lower seq leaves it where it
    /// is. The room's other members hear of a move, unless `actor` turned read receipts off.
    ///
    /// # Errors
    /// `NotFound` or `Forbidden` as for history, `BeyondLast` for a seq past the room's last.
    pub async fn mark_read(&self, actor: &User, room_id: RoomId, seq: u64) -> Result<ReadMarker, ReadError> {
        if !self.rooms.is_member(room_id, actor.id).await? {
            let standing = self.rooms.get(room_id).await?.map_or(Standing::Hidden, |room| room.standing(actor.id));
            return Err(match standing {
                Standing::Outsider => ReadError::Forbidden,
                Standing::Member | Standing::Hidden => ReadError::NotFound,
            });
        }
        let requested = ReadMarker::requested(seq, self.log.last_seq(room_id).await?)?;
        let marked = match self.rooms.mark_read(room_id, actor.id, requested).await {
            Ok(marked) => marked,
            // Removed since the check: as if never a member.
            Err(MarkReadError::NotMember) => return Err(ReadError::NotFound),
            Err(MarkReadError::Unknown(e)) => return Err(ReadError::Unknown(e)),
        };
        if marked.moved {
            if let Some(seq) = Seq::new(marked.marker.get()) {
                if self.users.settings(actor.id).await?.send_read_receipts {
                    self.announce(RoomEvent::Read { room_id, user: actor.into(), seq }).await;
                }
            }
        }
        Ok(marked.marker)
    }

    /// The rooms `actor` belongs to.
    ///
    /// # Errors
    /// Only infrastructure failures.
    pub async fn list_mine(&self, actor: &User, after: Option<RoomId>, size: PageSize) -> anyhow::Result<RoomList> {
        let rooms = self.rooms.list_for_member(actor.id, RoomPage { after, limit: size.get() + 1 }).await?;
        self.page(rooms, size, Some(actor.id)).await
    }

    /// Public rooms, whoever asks.
    ///
    /// # Errors
    /// Only infrastructure failures.
    pub async fn list_public(&self, after: Option<RoomId>, size: PageSize) -> anyhow::Result<RoomList> {
        let rooms = self.rooms.list_public(RoomPage { after, limit: size.get() + 1 }).await?;
        self.page(rooms, size, None).await
    }

    /// A room, for its members; public rooms are visible to anyone signed in.
    ///
    /// # Errors
    /// `NotFound` when the room does not exist or is private and `actor` is not a member.
    pub async fn get(&self, actor: &User, room_id: RoomId) -> Result<RoomDetails, RoomAccessError> {
        let room = self.rooms.get(room_id).await?.ok_or(RoomAccessError::NotFound)?;
        if room.standing(actor.id) == Standing::Hidden {
            return Err(RoomAccessError::NotFound);
        }
        Ok(self.details(room, actor.id).await?)
    }

    /// Joins a public room; joining a room one is already in changes nothing.
    ///
    /// # Errors
    /// `Private` for private rooms (members join those by invitation), `Full` at the limit.
    pub async fn join(&self, actor: &User, room_id: RoomId) -> Result<RoomDetails, JoinError> {
        let room = self.rooms.get(room_id).await?.ok_or(JoinError::NotFound)?;
        if room.is_member(actor.id) {
            return Ok(self.details(room, actor.id).await?);
        }
        // Nobody joins a direct room; to anyone else it does not exist.
        if room.is_direct() {
            return Err(JoinError::NotFound);
        }
        if room.visibility() == Visibility::Private {
            return Err(JoinError::Private);
        }
        match self.rooms.add_member(room_id, actor.id, self.clock.now()).await {
            Ok(()) => self.announce(RoomEvent::MemberJoined { room_id, user: actor.into() }).await,
            // A join of the same user on another request won the race: nothing changes.
            Err(MemberAddError::AlreadyMember) => {}
            Err(MemberAddError::Full(limit)) => return Err(JoinError::Full(limit)),
            Err(MemberAddError::NotFound | MemberAddError::Direct) => return Err(JoinError::NotFound),
            Err(MemberAddError::Unknown(e)) => return Err(JoinError::Unknown(e)),
        }
        Ok(self.details(self.rooms.get(room_id).await?.ok_or(JoinError::NotFound)?, actor.id).await?)
    }

    /// A member adds another user.
    ///
    /// # Errors
    /// `NotFound` unless `actor` is a member, `UnknownUser`, `AlreadyMember`, `Full`.
    pub async fn invite(&self, actor: &User, room_id: RoomId, invitee: UserRef) -> Result<RoomDetails, InviteError> {
        let user = find_user(self.users.as_ref(), &invitee)
            .await?
            .ok_or(InviteError::UnknownUser { field: invitee.field() })?;
        // An unknown room and a room one is not in look the same, as for every other action.
        if !self.rooms.is_member(room_id, actor.id).await? {
            return Err(InviteError::NotFound);
        }
        self.rooms.add_member(room_id, user.id, self.clock.now()).await.map_err(|e| match e {
            MemberAddError::NotFound => InviteError::NotFound,
            MemberAddError::AlreadyMember => InviteError::AlreadyMember,
            MemberAddError::Full(limit) => InviteError::Full(limit),
            MemberAddError::Direct => InviteError::Direct,
            MemberAddError::Unknown(e) => InviteError::Unknown(e),
        })?;
        self.announce(RoomEvent::MemberJoined { room_id, user: (&user).into() }).await;
        Ok(self.details(self.rooms.get(room_id).await?.ok_or(InviteError::NotFound)?, actor.id).await?)
    }

    /// Leaves a room. An owner hands it on; the last member out deletes it.
    ///
    /// # Errors
    /// `NotFound` unless `actor` is a member.
    pub async fn leave(&self, actor: &User, room_id: RoomId) -> Result<(), RoomAccessError> {
        match self.rooms.remove_member(room_id, actor.id).await {
            Ok(()) => {
                self.left(room_id, actor.id);
                self.announce(RoomEvent::MemberLeft { room_id, user: actor.into() }).await;
                return Ok(());
            }
            Err(MemberRemoveError::NotFound | MemberRemoveError::NotMember) => return Err(RoomAccessError::NotFound),
            Err(MemberRemoveError::Direct) => return Err(RoomAccessError::Direct),
            Err(MemberRemoveError::Unknown(e)) => return Err(RoomAccessError::Unknown(e)),
            // The owner hands the room on, which rewrites the room as a whole.
            Err(MemberRemoveError::Owner) => {}
        }
        let outcome = self
            .change(room_id, |room| {
                room.leave(actor.id).map_err(|e| match e {
                    RoomError::Direct => RoomAccessError::Direct,
                    _ => RoomAccessError::NotFound,
                })
            })
            .await;
        match outcome {
            Ok((_, LeaveOutcome::Emptied)) => {
                self.rooms.delete(room_id).await?;
                self.deleted(room_id);
                self.announce(RoomEvent::MemberLeft { room_id, user: actor.into() }).await;
                self.announce(RoomEvent::RoomDeleted { room_id }).await;
                Ok(())
            }
            Ok(_) => {
                self.left(room_id, actor.id);
                self.announce(RoomEvent::MemberLeft { room_id, user: actor.into() }).await;
                Ok(())
            }
            Err(ChangeError::Missing) => Err(RoomAccessError::NotFound),
            Err(ChangeError::Rule(e)) => Err(e),
            Err(ChangeError::Unknown(e)) => Err(RoomAccessError::Unknown(e)),
        }
    }

    /// The owner removes a member.
    ///
    /// # Errors
    /// `NotFound` unless `actor` is a member, `Forbidden` unless the owner, `NotMember`,
    /// `CannotRemoveOwner`.
    pub async fn remove_member(&self, actor: &User, room_id: RoomId, member: UserId) -> Result<(), RemoveMemberError> {
        let room = self.rooms.get(room_id).await?.ok_or(RemoveMemberError::NotFound)?;
        if !room.is_member(actor.id) {
            return Err(RemoveMemberError::NotFound);
        }
        if room.is_direct() {
            return Err(RemoveMemberError::Direct);
        }
        if !room.is_owner(actor.id) {
            return Err(RemoveMemberError::Forbidden);
        }
        self.rooms.remove_member(room_id, member).await.map_err(|e| match e {
            MemberRemoveError::NotFound => RemoveMemberError::NotFound,
            MemberRemoveError::NotMember => RemoveMemberError::NotMember,
            MemberRemoveError::Owner => RemoveMemberError::CannotRemoveOwner,
            MemberRemoveError::Direct => RemoveMemberError::Direct,
            MemberRemoveError::Unknown(e) => RemoveMemberError::Unknown(e),
        })?;
        self.left(room_id, member);
        let user = match self.users.by_id(member).await? {
            Some(user) => UserSummary::from(&user),
            None => return Ok(()),
        };
        self.announce(RoomEvent::MemberLeft { room_id, user }).await;
        Ok(())
    }

    /// The owner deletes the room.
    ///
    /// # Errors
    /// `NotFound` unless `actor` is a member, `Forbidden` unless the owner.
    pub async fn delete(&self, actor: &User, room_id: RoomId) -> Result<(), DeleteRoomError> {
        let room = self.rooms.get(room_id).await?.ok_or(DeleteRoomError::NotFound)?;
        if !room.is_member(actor.id) {
            return Err(DeleteRoomError::NotFound);
        }
        if room.is_direct() {
            return Err(DeleteRoomError::Direct);
        }
        if !room.is_owner(actor.id) {
            return Err(DeleteRoomError::Forbidden);
        }
        if self.rooms.delete(room_id).await? {
            self.deleted(room_id);
            self.announce(RoomEvent::RoomDeleted { room_id }).await;
        }
        Ok(())
    }

    /// Every room `user` belongs to, for subscribing a live connection.
    ///
    /// # Errors
    /// Only infrastructure failures.
    pub async fn subscriptions(&self, user: UserId) -> anyhow::Result<Vec<RoomId>> {
        self.rooms.room_ids_for_member(user).await
    }

    /// Called once the store no longer has `user` in `room`, before the caller is answered, so
    /// that no send on this node gets through after the removal is acknowledged.
    fn left(&self, room_id: RoomId, user: UserId) {
        if let Some(cache) = &self.membership {
            cache.member_left(room_id, user);
        }
    }

    /// As `left`, for every member of a deleted room.
    fn deleted(&self, room_id: RoomId) {
        if let Some(cache) = &self.membership {
            cache.room_deleted(room_id);
        }
    }

    /// Reads, changes and writes a room, retrying when another writer got there first.
    async fn change<T, E>(
        &self,
        room_id: RoomId,
        mut apply: impl FnMut(&mut Room) -> Result<T, E>,
    ) -> Result<(Room, T), ChangeError<E>> {
        for _ in 0..UPDATE_ATTEMPTS {
            let mut room = match self.rooms.get(room_id).await {
                Ok(Some(room)) => room,
                Ok(None) => return Err(ChangeError::Missing),
                Err(e) => return Err(ChangeError::Unknown(e)),
            };
            let before = room.clone();
            let value = apply(&mut room).map_err(ChangeError::Rule)?;
            if room == before {
                return Ok((room, value));
            }
            match self.rooms.update(&room).await {
                Ok(()) => return Ok((room, value)),
                Err(UpdateRoomError::Conflict) => continue,
                Err(UpdateRoomError::NotFound) => return Err(ChangeError::Missing),
                Err(UpdateRoomError::Unknown(e)) => return Err(ChangeError::Unknown(e)),
            }
        }
        Err(ChangeError::Unknown(anyhow::anyhow!(
            "room {room_id} kept changing; gave up after {UPDATE_ATTEMPTS} attempts"
        )))
    }

    /// Events are best effort: the change is already stored, and clients resync on reconnect.
    async fn announce(&self, event: RoomEvent) {
        if let Err(e) = self.bus.publish(event).await {
            tracing::warn!(error = %e, "could not publish room event");
        }
    }

    /// A page of rooms in a constant number of store round trips, however many rooms it holds:
    /// the members' names in one read, the viewer's markers in one, the log's tails in one, and
    /// the archive only for rooms whose unread messages the log no longer holds (one more).
    async fn page(&self, mut rooms: Vec<Room>, size: PageSize, viewer: Option<UserId>) -> anyhow::Result<RoomList> {
        let more = rooms.len() > size.get() as usize;
        rooms.truncate(size.get() as usize);
        let next_cursor = if more { rooms.last().map(Room::id) } else { None };
        if rooms.is_empty() {
            return Ok(RoomList { items: Vec::new(), next_cursor });
        }
        let mut ids: Vec<UserId> = rooms.iter().flat_map(|r| r.members().iter().map(|m| m.user_id)).collect();
        ids.sort();
        ids.dedup();
        let names: HashMap<UserId, Username> =
            self.users.by_ids(&ids).await?.into_iter().map(|u| (u.id, u.username)).collect();
        let room_ids: Vec<RoomId> = rooms.iter().map(Room::id).collect();
        let markers: HashMap<RoomId, ReadMarker> = match viewer {
            Some(viewer) => self.rooms.read_markers(viewer, &room_ids).await?.into_iter().collect(),
            None => HashMap::new(),
        };
        let queries: Vec<TailQuery> = room_ids
            .iter()
            .map(|&room| TailQuery { room, read: markers.get(&room).copied().unwrap_or_default() })
            .collect();
        let not_before = self.not_before();
        let tails = self.log.tails(&queries, not_before, UNREAD_CAP).await?;
        let readings = self.readings(&queries, tails.clone(), not_before).await?;
        let mut items = Vec::with_capacity(rooms.len());
        for ((room, tail), reading) in rooms.into_iter().zip(tails).zip(readings) {
            let usernames: HashMap<UserId, Username> = room
                .members()
                .iter()
                .filter_map(|m| names.get(&m.user_id).map(|name| (m.user_id, name.clone())))
                .collect();
            let direct_with = viewer.and_then(|viewer| direct_with(&room, viewer, &usernames));
            let reading = viewer.map(|_| reading);
            let last_seq = tail.last_seq.map_or(0, Seq::get);
            items.push(RoomDetails { room, usernames, last_seq, direct_with, reading });
        }
        Ok(RoomList { items, next_cursor })
    }

    /// Completes what the log said of each room from the archive, in one read for every room
    /// whose unread messages (or newest message) the log no longer holds.
    async fn readings(
        &self,
        queries: &[TailQuery],
        tails: Vec<RoomTail>,
        not_before: Option<domain::Timestamp>,
    ) -> anyhow::Result<Vec<Reading>> {
        let mut readings: Vec<Reading> = queries
            .iter()
            .zip(&tails)
            .map(|(query, tail)| Reading { marker: query.read, unread: tail.unread, last_message: tail.newest.clone() })
            .collect();
        let Some(archive) = &self.archive else {
            return Ok(readings);
        };
        let mut counts = Vec::new();
        let mut newest = Vec::new();
        for (i, (query, tail)) in queries.iter().zip(&tails).enumerate() {
            // The archive holds what is below the log's first seq; all of it when the log may
            // hold nothing of the room (it lost its data, or it never kept this room).
            let below = tail.holds_from;
            let read = query.read.get();
            let past_marker = tail.last_seq.is_none_or(|last| last.get() > read);
            let reaches_below = below.is_none_or(|first| first.get() > read + 1);
            if past_marker && reaches_below && tail.unread < UNREAD_CAP {
                let range = SeqRange { after: Seq::new(read), before: below, not_before, content_only: true };
                counts.push((i, (query.room, range)));
            }
            if tail.newest.is_none() && below.is_none_or(|first| first > Seq::FIRST) {
                newest.push((i, (query.room, SeqRange { after: None, before: below, not_before, content_only: true })));
            }
        }
        if !counts.is_empty() {
            let ranges: Vec<(RoomId, SeqRange)> = counts.iter().map(|(_, r)| *r).collect();
            let found = archive.count_in(&ranges, UNREAD_CAP).await?;
            for ((i, _), n) in counts.iter().zip(found) {
                readings[*i].unread = ReadMarker::capped(readings[*i].unread + n);
            }
        }
        if !newest.is_empty() {
            let ranges: Vec<(RoomId, SeqRange)> = newest.iter().map(|(_, r)| *r).collect();
            let found = archive.newest_in(&ranges).await?;
            for ((i, _), message) in newest.iter().zip(found) {
                readings[*i].last_message = message;
            }
        }
        Ok(readings)
    }

    fn not_before(&self) -> Option<domain::Timestamp> {
        self.retention.map(|retention| retention.message_cutoff(self.clock.now()))
    }

    async fn details(&self, room: Room, viewer: UserId) -> anyhow::Result<RoomDetails> {
        let ids: Vec<UserId> = room.members().iter().map(|m| m.user_id).collect();
        let usernames: HashMap<UserId, Username> =
            self.users.by_ids(&ids).await?.into_iter().map(|u| (u.id, u.username)).collect();
        let last_seq = self.log.last_seq(room.id()).await?.map_or(0, Seq::get);
        let direct_with = direct_with(&room, viewer, &usernames);
        Ok(RoomDetails { room, usernames, last_seq, direct_with, reading: None })
    }
}

/// The other user of a direct room, as `viewer` sees it.
fn direct_with(room: &Room, viewer: UserId, usernames: &HashMap<UserId, Username>) -> Option<UserSummary> {
    let peer = room.direct_pair()?.peer_of(viewer)?;
    Some(UserSummary { id: peer, username: usernames.get(&peer)?.clone() })
}
