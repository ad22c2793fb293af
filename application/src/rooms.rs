//! Room use cases: create, list, view, invite, join, leave, remove members, delete.

use std::collections::HashMap;
use std::sync::Arc;

use crate::accounts::{find_user, UserRef};

use domain::{
    LeaveOutcome, MemberLimit, Room, RoomError, RoomId, RoomName, Seq, Standing, User, UserId, Username, Visibility,
};

use crate::membership::MembershipCache;
use crate::ports::{
    Clock, EventBus, IdGenerator, MemberAddError, MemberRemoveError, MessageLog, RoomEvent, RoomPage, RoomRepository,
    UpdateRoomError, UserRepository, UserSummary,
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
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteRoomError {
    #[error("room not found")]
    NotFound,
    #[error("only the owner may delete the room")]
    Forbidden,
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
        Self { rooms, users, log, bus, clock, ids, member_limit, membership: None }
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
        Ok(self.details(room).await?)
    }

    /// The rooms `actor` belongs to.
    ///
    /// # Errors
    /// Only infrastructure failures.
    pub async fn list_mine(&self, actor: &User, after: Option<RoomId>, size: PageSize) -> anyhow::Result<RoomList> {
        let rooms = self.rooms.list_for_member(actor.id, RoomPage { after, limit: size.get() + 1 }).await?;
        self.page(rooms, size).await
    }

    /// Public rooms, whoever asks.
    ///
    /// # Errors
    /// Only infrastructure failures.
    pub async fn list_public(&self, after: Option<RoomId>, size: PageSize) -> anyhow::Result<RoomList> {
        let rooms = self.rooms.list_public(RoomPage { after, limit: size.get() + 1 }).await?;
        self.page(rooms, size).await
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
        Ok(self.details(room).await?)
    }

    /// Joins a public room; joining a room one is already in changes nothing.
    ///
    /// # Errors
    /// `Private` for private rooms (members join those by invitation), `Full` at the limit.
    pub async fn join(&self, actor: &User, room_id: RoomId) -> Result<RoomDetails, JoinError> {
        let room = self.rooms.get(room_id).await?.ok_or(JoinError::NotFound)?;
        if room.is_member(actor.id) {
            return Ok(self.details(room).await?);
        }
        if room.visibility() == Visibility::Private {
            return Err(JoinError::Private);
        }
        match self.rooms.add_member(room_id, actor.id, self.clock.now()).await {
            Ok(()) => self.announce(RoomEvent::MemberJoined { room_id, user: actor.into() }).await,
            // A join of the same user on another request won the race: nothing changes.
            Err(MemberAddError::AlreadyMember) => {}
            Err(MemberAddError::NotFound) => return Err(JoinError::NotFound),
            Err(MemberAddError::Full(limit)) => return Err(JoinError::Full(limit)),
            Err(MemberAddError::Unknown(e)) => return Err(JoinError::Unknown(e)),
        }
        Ok(self.details(self.rooms.get(room_id).await?.ok_or(JoinError::NotFound)?).await?)
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
            MemberAddError::Unknown(e) => InviteError::Unknown(e),
        })?;
        self.announce(RoomEvent::MemberJoined { room_id, user: (&user).into() }).await;
        Ok(self.details(self.rooms.get(room_id).await?.ok_or(InviteError::NotFound)?).await?)
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
            Err(MemberRemoveError::Unknown(e)) => return Err(RoomAccessError::Unknown(e)),
            // The owner hands the room on, which rewrites the room as a whole.
            Err(MemberRemoveError::Owner) => {}
        }
        let outcome = self.change(room_id, |room| room.leave(actor.id).map_err(|_| RoomAccessError::NotFound)).await;
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
        if !room.is_owner(actor.id) {
            return Err(RemoveMemberError::Forbidden);
        }
        self.rooms.remove_member(room_id, member).await.map_err(|e| match e {
            MemberRemoveError::NotFound => RemoveMemberError::NotFound,
            MemberRemoveError::NotMember => RemoveMemberError::NotMember,
            MemberRemoveError::Owner => RemoveMemberError::CannotRemoveOwner,
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

    async fn page(&self, mut rooms: Vec<Room>, size: PageSize) -> anyhow::Result<RoomList> {
        let more = rooms.len() > size.get() as usize;
        rooms.truncate(size.get() as usize);
        let next_cursor = if more { rooms.last().map(Room::id) } else { None };
        let mut items = Vec::with_capacity(rooms.len());
        for room in rooms {
            items.push(self.details(room).await?);
        }
        Ok(RoomList { items, next_cursor })
    }

    async fn details(&self, room: Room) -> anyhow::Result<RoomDetails> {
        let ids: Vec<UserId> = room.members().iter().map(|m| m.user_id).collect();
        let usernames = self.users.by_ids(&ids).await?.into_iter().map(|u| (u.id, u.username)).collect();
        let last_seq = self.log.last_seq(room.id()).await?.map_or(0, Seq::get);
        Ok(RoomDetails { room, usernames, last_seq })
    }
}
