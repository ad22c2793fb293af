//! Rooms, their members and roles, and the membership rules.

use crate::{is_forbidden_control, uuid_id, Timestamp, UserId};

uuid_id!(
    /// Identifies a room; time-ordered, so listing by id lists by creation.
    RoomId
);

/// A room name: 1 to 64 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    #[error("room name must be 1 to 64 characters long after trimming, got {0}")]
    Length(usize),
    #[error("room name must not contain control characters")]
    ControlCharacter,
}

impl RoomName {
    pub const MAX_CHARS: usize = 64;

    /// Invisible format characters (bidi overrides, zero-width spaces) are stripped first, so a
    /// name shows what it says.
    pub fn new(raw: &str) -> Result<Self, RoomNameError> {
        let visible: String = raw.chars().filter(|&c| !crate::is_format_control(c)).collect();
        let trimmed = visible.trim();
        let count = trimmed.chars().count();
        if count == 0 || count > Self::MAX_CHARS {
            return Err(RoomNameError::Length(count));
        }
        if trimmed.chars().any(|c| is_forbidden_control(c, &[])) {
            return Err(RoomNameError::ControlCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Listed, and anyone may join.
    Public,
    /// Unlisted; members join by invitation only.
    Private,
}

/// Where a user stands with a room, which decides what they are told when they act in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Member,
    /// Not a member of a public room: it is visible, so they are told they are not a member.
    Outsider,
    /// Not a member of a private room: it does not exist for them.
    Hidden,
}

impl Visibility {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "public" => Some(Self::Public),
            "private" => Some(Self::Private),
            _ => None,
        }
    }
}

/// What a room is for: a group that members come and go from, or a direct conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomKind {
    Group,
    /// Exactly two users, for good: nobody joins, is invited, leaves or is removed.
    Direct,
}

impl RoomKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Direct => "direct",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "group" => Some(Self::Group),
            "direct" => Some(Self::Direct),
            _ => None,
        }
    }
}

/// The two users of a direct room, lower id first: one key per pair, whoever opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirectPair {
    low: UserId,
    high: UserId,
}

impl DirectPair {
    /// `None` for a user and themselves: a conversation needs two people.
    pub fn new(a: UserId, b: UserId) -> Option<Self> {
        match a.cmp(&b) {
            std::cmp::Ordering::Less => Some(Self { low: a, high: b }),
            std::cmp::Ordering::Greater => Some(Self { low: b, high: a }),
            std::cmp::Ordering::Equal => None,
        }
    }

    pub const fn low(self) -> UserId {
        self.low
    }

    pub const fn high(self) -> UserId {
        self.high
    }

    /// One string per pair, for a unique index: `{low}:{high}`.
    pub fn key(self) -> String {
        format!("{}:{}", self.low, self.high)
    }

    /// The other user of the pair, if `user` is one of them.
    pub fn peer_of(self, user: UserId) -> Option<UserId> {
        if user == self.low {
            Some(self.high)
        } else if user == self.high {
            Some(self.low)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Owner,
    Member,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "owner" => Some(Self::Owner),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// The most members a room may hold; at least 1 so the owner fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberLimit(u32);

impl MemberLimit {
    pub const DEFAULT: Self = Self(100);

    pub fn new(limit: u32) -> Option<Self> {
        (limit >= 1).then_some(Self(limit))
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for MemberLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub role: Role,
    pub joined_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("the room is full ({0} members)")]
    Full(u32),
    #[error("the user is already a member of the room")]
    AlreadyMember,
    #[error("the user is not a member of the room")]
    NotMember,
    #[error("the owner cannot be removed; the owner may leave or delete the room")]
    CannotRemoveOwner,
    #[error("a direct conversation keeps its two users: nobody joins, leaves or is removed")]
    Direct,
}

/// What happened when a member left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveOutcome {
    Left,
    /// The owner left and the longest-standing member became owner.
    OwnershipTransferred {
        new_owner: UserId,
    },
    /// The last member left; the room should be deleted.
    Emptied,
}

/// A room with its members, oldest member first. Mutations enforce the membership rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    id: RoomId,
    name: RoomName,
    visibility: Visibility,
    kind: RoomKind,
    owner: UserId,
    members: Vec<Member>,
    member_limit: MemberLimit,
    created_at: Timestamp,
    /// Optimistic-concurrency version: storage refuses an update made from a stale copy.
    version: u64,
}

impl Room {
    /// A new room whose only member is its owner.
    pub fn create(
        id: RoomId,
        name: RoomName,
        visibility: Visibility,
        owner: UserId,
        member_limit: MemberLimit,
        created_at: Timestamp,
    ) -> Self {
        Self {
            id,
            name,
            visibility,
            kind: RoomKind::Group,
            owner,
            members: vec![Member { user_id: owner, role: Role::Owner, joined_at: created_at }],
            member_limit,
            created_at,
            version: 0,
        }
    }

    /// The name every direct room is stored under; clients show the other user's name instead.
    pub const DIRECT_NAME: &'static str = "direct";

    /// A direct conversation between `opener` (its owner) and `other`: private, for the two of
    /// them only. `None` when they are the same user.
    pub fn direct(id: RoomId, opener: UserId, other: UserId, created_at: Timestamp) -> Option<Self> {
        DirectPair::new(opener, other)?;
        Some(Self {
            id,
            name: RoomName(Self::DIRECT_NAME.to_owned()),
            visibility: Visibility::Private,
            kind: RoomKind::Direct,
            owner: opener,
            members: vec![
                Member { user_id: opener, role: Role::Owner, joined_at: created_at },
                Member { user_id: other, role: Role::Member, joined_at: created_at },
            ],
            member_limit: MemberLimit(2),
            created_at,
            version: 0,
        })
    }

    /// Rebuilds a room read back from storage. Members are sorted oldest first.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        id: RoomId,
        name: RoomName,
        visibility: Visibility,
        kind: RoomKind,
        owner: UserId,
        mut members: Vec<Member>,
        member_limit: MemberLimit,
        created_at: Timestamp,
        version: u64,
    ) -> Self {
        members.sort_by_key(|m| (m.joined_at, m.role != Role::Owner, m.user_id));
        Self { id, name, visibility, kind, owner, members, member_limit, created_at, version }
    }

    pub fn id(&self) -> RoomId {
        self.id
    }
    pub fn name(&self) -> &RoomName {
        &self.name
    }
    pub fn visibility(&self) -> Visibility {
        self.visibility
    }
    pub fn kind(&self) -> RoomKind {
        self.kind
    }
    pub fn is_direct(&self) -> bool {
        self.kind == RoomKind::Direct
    }
    /// The pair a direct room is between; `None` for a group.
    pub fn direct_pair(&self) -> Option<DirectPair> {
        if !self.is_direct() {
            return None;
        }
        match self.members.as_slice() {
            [a, b] => DirectPair::new(a.user_id, b.user_id),
            _ => None,
        }
    }
    pub fn owner(&self) -> UserId {
        self.owner
    }
    pub fn members(&self) -> &[Member] {
        &self.members
    }
    pub fn member_limit(&self) -> MemberLimit {
        self.member_limit
    }
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn is_member(&self, user: UserId) -> bool {
        self.members.iter().any(|m| m.user_id == user)
    }

    /// Where `user` stands with this room.
    pub fn standing(&self, user: UserId) -> Standing {
        match (self.is_member(user), self.visibility) {
            (true, _) => Standing::Member,
            (false, Visibility::Public) => Standing::Outsider,
            (false, Visibility::Private) => Standing::Hidden,
        }
    }

    pub fn is_owner(&self, user: UserId) -> bool {
        self.owner == user
    }

    /// Adds `user` as a plain member, within the member limit.
    pub fn add_member(&mut self, user: UserId, now: Timestamp) -> Result<(), RoomError> {
        if self.is_direct() {
            return Err(RoomError::Direct);
        }
        if self.is_member(user) {
            return Err(RoomError::AlreadyMember);
        }
        let limit = self.member_limit.get();
        if self.members.len() >= limit as usize {
            return Err(RoomError::Full(limit));
        }
        self.members.push(Member { user_id: user, role: Role::Member, joined_at: now });
        Ok(())
    }

    /// Removes `user` on their own behalf. An owner hands the room to the longest-standing member.
    pub fn leave(&mut self, user: UserId) -> Result<LeaveOutcome, RoomError> {
        if self.is_direct() {
            return Err(RoomError::Direct);
        }
        let index = self.position(user)?;
        self.members.remove(index);
        if self.owner != user {
            return Ok(LeaveOutcome::Left);
        }
        match self.members.first_mut() {
            None => Ok(LeaveOutcome::Emptied),
            Some(heir) => {
                heir.role = Role::Owner;
                self.owner = heir.user_id;
                Ok(LeaveOutcome::OwnershipTransferred { new_owner: heir.user_id })
            }
        }
    }

    /// Removes another member; the owner cannot be removed this way.
    pub fn remove_member(&mut self, user: UserId) -> Result<(), RoomError> {
        if self.is_direct() {
            return Err(RoomError::Direct);
        }
        if self.owner == user {
            return Err(RoomError::CannotRemoveOwner);
        }
        let index = self.position(user)?;
        self.members.remove(index);
        Ok(())
    }

    fn position(&self, user: UserId) -> Result<usize, RoomError> {
        self.members.iter().position(|m| m.user_id == user).ok_or(RoomError::NotMember)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};
    use proptest::prelude::*;

    fn user(n: u128) -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn t(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_700_000_000, 0).unwrap() + Duration::seconds(secs)
    }

    fn room_of(owner: u128, limit: u32) -> Room {
        Room::create(
            RoomId::from_uuid(uuid::Uuid::from_u128(999)),
            RoomName::new("general").unwrap(),
            Visibility::Public,
            user(owner),
            MemberLimit::new(limit).unwrap(),
            t(0),
        )
    }

    #[test]
    fn a_member_is_a_member_and_an_outsider_sees_a_public_room_but_not_a_private_one() {
        let public = room_of(1, 10);
        let private = Room::create(
            RoomId::from_uuid(uuid::Uuid::from_u128(998)),
            RoomName::new("secret").unwrap(),
            Visibility::Private,
            user(1),
            MemberLimit::new(10).unwrap(),
            t(0),
        );

        assert_eq!(public.standing(user(1)), Standing::Member);
        assert_eq!(public.standing(user(2)), Standing::Outsider);
        assert_eq!(private.standing(user(2)), Standing::Hidden);
    }

    #[test]
    fn room_names_are_trimmed_and_bounded() {
        assert_eq!(RoomName::new("  lobby  ").unwrap().as_str(), "lobby");
        assert_eq!(RoomName::new("   "), Err(RoomNameError::Length(0)));
        assert!(RoomName::new(&"r".repeat(64)).is_ok());
        assert_eq!(RoomName::new(&"r".repeat(65)), Err(RoomNameError::Length(65)));
    }

    #[test]
    fn room_names_lose_bidi_overrides_and_zero_width_spaces() {
        assert_eq!(RoomName::new("team\u{202E}terces").unwrap().as_str(), "teamterces");
        assert_eq!(RoomName::new("\u{200B}\u{2066}ops\u{2069}").unwrap().as_str(), "ops");
        assert_eq!(RoomName::new("\u{202E}\u{FEFF}"), Err(RoomNameError::Length(0)));
    }

    #[test]
    fn room_names_refuse_control_characters() {
        assert_eq!(RoomName::new("a\u{7}b"), Err(RoomNameError::ControlCharacter));
        assert_eq!(RoomName::new("a\nb"), Err(RoomNameError::ControlCharacter));
    }

    #[test]
    fn a_new_room_has_its_owner_as_only_member() {
        let room = room_of(1, 100);
        assert_eq!(room.members().len(), 1);
        assert_eq!(room.members()[0].role, Role::Owner);
        assert!(room.is_owner(user(1)));
    }

    #[test]
    fn member_limit_defaults_to_one_hundred_and_is_at_least_one() {
        assert_eq!(MemberLimit::default().get(), 100);
        assert_eq!(MemberLimit::new(0), None);
    }

    #[test]
    fn adding_beyond_the_limit_is_refused() {
        let mut room = room_of(1, 2);
        room.add_member(user(2), t(1)).unwrap();
        assert_eq!(room.add_member(user(3), t(2)), Err(RoomError::Full(2)));
    }

    #[test]
    fn adding_a_member_twice_is_refused() {
        let mut room = room_of(1, 10);
        room.add_member(user(2), t(1)).unwrap();
        assert_eq!(room.add_member(user(2), t(2)), Err(RoomError::AlreadyMember));
    }

    #[test]
    fn an_owner_who_leaves_hands_the_room_to_the_longest_standing_member() {
        let mut room = room_of(1, 10);
        room.add_member(user(3), t(5)).unwrap();
        room.add_member(user(2), t(10)).unwrap();
        assert_eq!(room.leave(user(1)), Ok(LeaveOutcome::OwnershipTransferred { new_owner: user(3) }));
        assert!(room.is_owner(user(3)));
        assert_eq!(room.members()[0].role, Role::Owner);
    }

    #[test]
    fn the_last_member_leaving_empties_the_room() {
        let mut room = room_of(1, 10);
        assert_eq!(room.leave(user(1)), Ok(LeaveOutcome::Emptied));
    }

    #[test]
    fn a_plain_member_leaving_changes_nothing_else() {
        let mut room = room_of(1, 10);
        room.add_member(user(2), t(1)).unwrap();
        assert_eq!(room.leave(user(2)), Ok(LeaveOutcome::Left));
        assert!(room.is_owner(user(1)));
        assert_eq!(room.leave(user(2)), Err(RoomError::NotMember));
    }

    #[test]
    fn the_owner_cannot_be_removed() {
        let mut room = room_of(1, 10);
        room.add_member(user(2), t(1)).unwrap();
        assert_eq!(room.remove_member(user(1)), Err(RoomError::CannotRemoveOwner));
        assert_eq!(room.remove_member(user(2)), Ok(()));
        assert_eq!(room.remove_member(user(2)), Err(RoomError::NotMember));
    }

    #[test]
    fn restore_orders_members_oldest_first() {
        let members = vec![
            Member { user_id: user(2), role: Role::Member, joined_at: t(9) },
            Member { user_id: user(1), role: Role::Owner, joined_at: t(0) },
        ];
        let room = Room::restore(
            RoomId::from_uuid(uuid::Uuid::from_u128(5)),
            RoomName::new("x").unwrap(),
            Visibility::Private,
            RoomKind::Group,
            user(1),
            members,
            MemberLimit::DEFAULT,
            t(0),
            3,
        );
        assert_eq!(room.members()[0].user_id, user(1));
        assert_eq!(room.version(), 3);
    }

    #[test]
    fn a_direct_room_is_private_between_two_users_whoever_opened_it() {
        let opened = Room::direct(RoomId::from_uuid(uuid::Uuid::from_u128(7)), user(2), user(1), t(0)).unwrap();

        assert_eq!(opened.kind(), RoomKind::Direct);
        assert_eq!(opened.visibility(), Visibility::Private);
        assert_eq!(opened.members().len(), 2);
        assert!(opened.is_owner(user(2)));
        assert_eq!(opened.direct_pair(), DirectPair::new(user(1), user(2)));
        assert_eq!(DirectPair::new(user(2), user(1)), DirectPair::new(user(1), user(2)));
        assert_eq!(opened.direct_pair().unwrap().peer_of(user(1)), Some(user(2)));
        assert_eq!(opened.direct_pair().unwrap().peer_of(user(3)), None);
    }

    #[test]
    fn nobody_has_a_direct_room_with_themselves() {
        assert_eq!(Room::direct(RoomId::from_uuid(uuid::Uuid::from_u128(7)), user(1), user(1), t(0)), None);
        assert_eq!(DirectPair::new(user(1), user(1)), None);
    }

    #[test]
    fn a_direct_room_takes_no_one_in_and_lets_no_one_out() {
        let mut room = Room::direct(RoomId::from_uuid(uuid::Uuid::from_u128(7)), user(1), user(2), t(0)).unwrap();
        let before = room.clone();

        assert_eq!(room.add_member(user(3), t(1)), Err(RoomError::Direct));
        assert_eq!(room.leave(user(2)), Err(RoomError::Direct));
        assert_eq!(room.leave(user(1)), Err(RoomError::Direct));
        assert_eq!(room.remove_member(user(2)), Err(RoomError::Direct));
        assert_eq!(room, before);
    }

    #[test]
    fn a_group_has_no_direct_pair() {
        assert_eq!(room_of(1, 10).kind(), RoomKind::Group);
        assert_eq!(room_of(1, 10).direct_pair(), None);
    }

    proptest! {
        #[test]
        fn accepted_room_names_are_trimmed_and_clean(raw in "\\PC{0,80}|[\\x00-\\x1f a-z]{0,10}") {
            if let Ok(name) = RoomName::new(&raw) {
                let s = name.as_str();
                prop_assert_eq!(s, s.trim());
                prop_assert!((1..=64).contains(&s.chars().count()));
                prop_assert!(!s.chars().any(char::is_control));
            }
        }

        #[test]
        fn membership_never_exceeds_the_limit(limit in 1u32..20, joins in 0usize..40) {
            let mut room = room_of(1, limit);
            for i in 0..joins {
                let _ = room.add_member(user(100 + i as u128), t(i as i64));
            }
            prop_assert!(room.members().len() <= limit as usize);
            prop_assert_eq!(room.members().iter().filter(|m| m.role == Role::Owner).count(), 1);
        }
    }
}
