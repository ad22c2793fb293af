//! `RoomRepository` on MongoDB: room documents with a version, memberships in their own collection
//! (each with its member's read marker), direct rooms unique per pair.

use anyhow::Context;
use application::ports::{
    InsertDirectError, MarkReadError, MarkedRead, MemberAddError, MemberRemoveError, RoomPage, RoomRepository,
    UpdateRoomError,
};
use async_trait::async_trait;
use bson::{doc, Bson, Document};
use domain::{
    DirectPair, Member, MemberLimit, ReadMarker, Role, Room, RoomId, RoomKind, RoomName, Timestamp, UserId, Visibility,
};
use futures::{FutureExt, TryStreamExt};
use mongodb::{ClientSession, Collection};
use serde::{Deserialize, Serialize};

use crate::codec::{date, id_text, is_duplicate_key, limit, parse_id, timestamp, to_i64, to_u64};
use crate::schema::{DELETED_ROOMS, MEMBERSHIPS, ROOMS};
use crate::store::in_session;
use crate::MongoStore;

#[derive(Serialize, Deserialize)]
struct RoomDoc {
    #[serde(rename = "_id")]
    id: String,
    name: String,
    visibility: String,
    /// `group` or `direct`; rooms stored before direct rooms existed are groups.
    #[serde(default = "group")]
    kind: String,
    /// `{low}:{high}` user ids of a direct room, under a unique sparse index; absent for a group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    direct_key: Option<String>,
    owner_id: String,
    member_limit: i64,
    created_at: bson::DateTime,
    /// Compare-and-swap token: an update names the version it read, and bumps it.
    version: i64,
    /// How many memberships the room has: one add reserves a place here with a guarded `$inc`,
    /// which keeps the member limit without a transaction.
    #[serde(default)]
    member_count: i64,
    /// Joined in by `$lookup` on reads only; memberships live in their own collection.
    #[serde(default, skip_serializing)]
    members: Vec<MembershipDoc>,
}

fn group() -> String {
    RoomKind::Group.as_str().to_owned()
}

#[derive(Serialize, Deserialize)]
struct MembershipDoc {
    room_id: String,
    user_id: String,
    role: String,
    joined_at: bson::DateTime,
    /// The member's read marker; only ever raised, with `$max`.
    #[serde(default)]
    last_read_seq: i64,
}

impl RoomDoc {
    fn of(room: &Room) -> anyhow::Result<Self> {
        Ok(Self {
            id: id_text(room.id().as_uuid()),
            name: room.name().as_str().to_owned(),
            visibility: room.visibility().as_str().to_owned(),
            kind: room.kind().as_str().to_owned(),
            direct_key: room.direct_pair().map(DirectPair::key),
            owner_id: id_text(room.owner().as_uuid()),
            member_limit: i64::from(room.member_limit().get()),
            created_at: date(room.created_at()),
            version: to_i64(room.version())?,
            member_count: to_i64(room.members().len() as u64)?,
            members: Vec::new(),
        })
    }

    fn into_room(self) -> anyhow::Result<Room> {
        let id = &self.id;
        let members = self.members.iter().map(MembershipDoc::to_member).collect::<anyhow::Result<Vec<_>>>()?;
        let limit = self.member_limit;
        Ok(Room::restore(
            parse_id(id)?,
            RoomName::new(&self.name).with_context(|| format!("room {id} has an invalid name {:?}", self.name))?,
            Visibility::parse(&self.visibility)
                .with_context(|| format!("room {id} has an unknown visibility {:?}", self.visibility))?,
            RoomKind::parse(&self.kind).with_context(|| format!("room {id} has an unknown kind {:?}", self.kind))?,
            parse_id(&self.owner_id)?,
            members,
            u32::try_from(limit)
                .ok()
                .and_then(MemberLimit::new)
                .with_context(|| format!("room {id} has an invalid member limit {limit}"))?,
            timestamp(self.created_at),
            to_u64(self.version)?,
        ))
    }
}

impl MembershipDoc {
    fn all_of(room: &Room) -> Vec<Self> {
        let room_id = id_text(room.id().as_uuid());
        room.members()
            .iter()
            .map(|m| Self {
                room_id: room_id.clone(),
                user_id: id_text(m.user_id.as_uuid()),
                role: m.role.as_str().to_owned(),
                joined_at: date(m.joined_at),
                last_read_seq: 0,
            })
            .collect()
    }

    fn to_member(&self) -> anyhow::Result<Member> {
        Ok(Member {
            user_id: parse_id(&self.user_id)?,
            role: Role::parse(&self.role).with_context(|| {
                format!("member {} of room {} has an unknown role {:?}", self.user_id, self.room_id, self.role)
            })?,
            joined_at: timestamp(self.joined_at),
        })
    }
}

/// The stage that joins each room's memberships in as `members`.
fn join_members() -> Document {
    doc! { "$lookup": { "from": MEMBERSHIPS, "localField": "_id", "foreignField": "room_id", "as": "members" } }
}

/// The lowest possible cursor: every id string sorts after the empty string.
fn cursor(page: RoomPage) -> String {
    page.after.map(|id| id_text(id.as_uuid())).unwrap_or_default()
}

/// What a room write hands to the steps that may run inside a transaction.
struct RoomWrite {
    rooms: Collection<RoomDoc>,
    memberships: Collection<MembershipDoc>,
    room: RoomDoc,
    members: Vec<MembershipDoc>,
}

impl RoomWrite {
    async fn insert(&self, mut session: Option<&mut ClientSession>) -> mongodb::error::Result<()> {
        in_session!(session, self.rooms.insert_one(&self.room))?;
        self.insert_members(session).await
    }

    /// The compare-and-swap: false when no room with this id has the version the update was made from.
    async fn update(&self, mut session: Option<&mut ClientSession>) -> mongodb::error::Result<bool> {
        let room = &self.room;
        let swapped = in_session!(
            session,
            self.rooms.update_one(
                doc! { "_id": &room.id, "version": room.version },
                doc! {
                    "$set": {
                        "name": &room.name,
                        "visibility": &room.visibility,
                        "owner_id": &room.owner_id,
                        "member_limit": room.member_limit,
                        "member_count": room.member_count,
                    },
                    "$inc": { "version": 1_i64 },
                },
            )
        )?;
        if swapped.matched_count == 0 {
            return Ok(false);
        }
        // Memberships that stay are updated in place, so their read markers stay with them.
        let kept: Vec<&str> = self.members.iter().map(|m| m.user_id.as_str()).collect();
        in_session!(session, self.memberships.delete_many(doc! { "room_id": &room.id, "user_id": { "$nin": kept } }))?;
        for member in &self.members {
            in_session!(
                session,
                self.memberships
                    .update_one(
                        doc! { "room_id": &member.room_id, "user_id": &member.user_id },
                        doc! {
                            "$set": { "role": &member.role, "joined_at": member.joined_at },
                            "$setOnInsert": { "last_read_seq": 0_i64 },
                        },
                    )
                    .upsert(true)
            )?;
        }
        Ok(true)
    }

    async fn insert_members(&self, mut session: Option<&mut ClientSession>) -> mongodb::error::Result<()> {
        if !self.members.is_empty() {
            in_session!(session, self.memberships.insert_many(&self.members))?;
        }
        Ok(())
    }
}

/// What one member's arrival hands to the steps that may run inside a transaction.
struct MemberAdd {
    rooms: Collection<Document>,
    memberships: Collection<MembershipDoc>,
    member: MembershipDoc,
}

/// Why an add wrote nothing, or that it wrote.
enum Added {
    Yes,
    NoRoom,
    AlreadyMember,
    Full(i64),
    Direct,
    /// The stored room has no usable member limit.
    Corrupt,
}

impl MemberAdd {
    async fn run(&self, mut session: Option<&mut ClientSession>) -> mongodb::error::Result<Added> {
        let member = &self.member;
        let room = in_session!(
            session,
            self.rooms.find_one(doc! { "_id": &member.room_id }).projection(doc! { "member_limit": 1, "kind": 1 })
        )?;
        let Some(room) = room else {
            return Ok(Added::NoRoom);
        };
        if room.get_str("kind") == Ok(RoomKind::Direct.as_str()) {
            return Ok(Added::Direct);
        }
        let limit = match room.get("member_limit") {
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Int32(n)) => i64::from(*n),
            _ => return Ok(Added::Corrupt),
        };
        let mine = doc! { "room_id": &member.room_id, "user_id": &member.user_id };
        if in_session!(session, self.memberships.find_one(mine))?.is_some() {
            return Ok(Added::AlreadyMember);
        }
        // The place is taken before the membership is written: a crash in between on a server
        // without transactions leaves the room looking one fuller, never over its limit.
        let reserved = in_session!(
            session,
            self.rooms.update_one(
                doc! { "_id": &member.room_id, "member_count": { "$lt": limit } },
                doc! { "$inc": { "member_count": 1_i64, "version": 1_i64 } },
            )
        )?;
        if reserved.matched_count == 0 {
            return Ok(Added::Full(limit));
        }
        match in_session!(session, self.memberships.insert_one(member)) {
            Ok(_) => Ok(Added::Yes),
            // The same user was added by a concurrent call. In a transaction the error aborts it
            // and the place with it; without one, the place is given back here.
            Err(e) if is_duplicate_key(&e) && session.is_none() => {
                let release = doc! { "$inc": { "member_count": -1_i64, "version": 1_i64 } };
                self.rooms.update_one(doc! { "_id": &member.room_id }, release).await?;
                Ok(Added::AlreadyMember)
            }
            Err(e) => Err(e),
        }
    }
}

/// What one member's removal hands to the steps that may run inside a transaction.
struct MemberRemove {
    rooms: Collection<Document>,
    memberships: Collection<MembershipDoc>,
    room_id: String,
    user_id: String,
}

impl MemberRemove {
    async fn run(
        &self,
        mut session: Option<&mut ClientSession>,
    ) -> mongodb::error::Result<Result<(), MemberRemoveError>> {
        let mine = doc! { "room_id": &self.room_id, "user_id": &self.user_id };
        let room =
            in_session!(session, self.rooms.find_one(doc! { "_id": &self.room_id }).projection(doc! { "kind": 1 }))?;
        let Some(room) = room else {
            return Ok(Err(MemberRemoveError::NotFound));
        };
        if room.get_str("kind") == Ok(RoomKind::Direct.as_str()) {
            return Ok(Err(MemberRemoveError::Direct));
        }
        // Only a plain member: the owner's membership has the owner's role.
        let plain = doc! { "room_id": &self.room_id, "user_id": &self.user_id, "role": Role::Member.as_str() };
        let deleted = in_session!(session, self.memberships.delete_one(plain))?;
        if deleted.deleted_count == 0 {
            let kept = in_session!(session, self.memberships.find_one(mine))?;
            return Ok(Err(if kept.is_some() { MemberRemoveError::Owner } else { MemberRemoveError::NotMember }));
        }
        let released = in_session!(
            session,
            self.rooms.update_one(
                doc! { "_id": &self.room_id },
                doc! { "$inc": { "member_count": -1_i64, "version": 1_i64 } },
            )
        )?;
        // A membership left behind by a delete cut short without transactions: now swept.
        if released.matched_count == 0 {
            return Ok(Err(MemberRemoveError::NotFound));
        }
        Ok(Ok(()))
    }
}

/// What a room delete hands to the steps that may run inside a transaction.
struct RoomDelete {
    rooms: Collection<RoomDoc>,
    memberships: Collection<MembershipDoc>,
    deleted: Collection<Document>,
    id: String,
}

impl RoomDelete {
    /// Deletes the room, then its memberships, which also sweeps any left behind by an earlier
    /// delete that stopped half-way on a server without transactions; and remembers the room
    /// until its content is cleared.
    async fn run(&self, mut session: Option<&mut ClientSession>) -> mongodb::error::Result<bool> {
        let deleted = in_session!(session, self.rooms.delete_one(doc! { "_id": &self.id }))?;
        in_session!(session, self.memberships.delete_many(doc! { "room_id": &self.id }))?;
        if deleted.deleted_count > 0 {
            let remembered = doc! { "$setOnInsert": { "deleted_at": bson::DateTime::now() } };
            in_session!(session, self.deleted.update_one(doc! { "_id": &self.id }, remembered).upsert(true))?;
        }
        Ok(deleted.deleted_count > 0)
    }
}

impl MongoStore {
    fn rooms(&self) -> Collection<RoomDoc> {
        self.db().collection(ROOMS)
    }

    fn memberships(&self) -> Collection<MembershipDoc> {
        self.db().collection(MEMBERSHIPS)
    }

    fn room_write(&self, room: RoomDoc, members: Vec<MembershipDoc>) -> RoomWrite {
        RoomWrite { rooms: self.rooms(), memberships: self.memberships(), room, members }
    }

    async fn rooms_from(&self, cursor: mongodb::Cursor<RoomDoc>) -> anyhow::Result<Vec<Room>> {
        let docs: Vec<RoomDoc> = cursor.try_collect().await?;
        docs.into_iter().map(RoomDoc::into_room).collect()
    }
}

#[async_trait]
impl RoomRepository for MongoStore {
    async fn insert(&self, room: &Room) -> anyhow::Result<()> {
        let write = self.room_write(RoomDoc::of(room)?, MembershipDoc::all_of(room));
        self.write_together(write, |session, write| write.insert(session).boxed())
            .await
            .with_context(|| format!("inserting room {}", room.id()))
    }

    async fn get(&self, id: RoomId) -> anyhow::Result<Option<Room>> {
        let pipeline = [doc! { "$match": { "_id": id_text(id.as_uuid()) } }, join_members()];
        let cursor = self.rooms().aggregate(pipeline).with_type::<RoomDoc>().await?;
        Ok(self.rooms_from(cursor).await?.into_iter().next())
    }

    async fn update(&self, room: &Room) -> Result<(), UpdateRoomError> {
        let write = self.room_write(RoomDoc::of(room)?, MembershipDoc::all_of(room));
        let swapped = self
            .write_together(write, |session, write| write.update(session).boxed())
            .await
            .with_context(|| format!("updating room {}", room.id()))?;
        if swapped {
            return Ok(());
        }
        // Nothing was written; a second look only tells a stale copy from a deleted room.
        let exists = self
            .rooms()
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": id_text(room.id().as_uuid()) })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(anyhow::Error::from)?;
        Err(if exists.is_some() { UpdateRoomError::Conflict } else { UpdateRoomError::NotFound })
    }

    async fn add_member(&self, room: RoomId, user: UserId, joined_at: Timestamp) -> Result<(), MemberAddError> {
        let add = MemberAdd {
            rooms: self.rooms().clone_with_type(),
            memberships: self.memberships(),
            member: MembershipDoc {
                room_id: id_text(room.as_uuid()),
                user_id: id_text(user.as_uuid()),
                role: Role::Member.as_str().to_owned(),
                joined_at: date(joined_at),
                last_read_seq: 0,
            },
        };
        match self.write_together(add, |session, add| add.run(session).boxed()).await {
            Ok(Added::Yes) => Ok(()),
            Ok(Added::NoRoom) => Err(MemberAddError::NotFound),
            Ok(Added::AlreadyMember) => Err(MemberAddError::AlreadyMember),
            Ok(Added::Full(limit)) => Err(MemberAddError::Full(u32::try_from(limit).unwrap_or(u32::MAX))),
            Ok(Added::Direct) => Err(MemberAddError::Direct),
            Ok(Added::Corrupt) => Err(anyhow::anyhow!("room {room} has no valid member limit").into()),
            Err(e) if is_duplicate_key(&e) => Err(MemberAddError::AlreadyMember),
            Err(e) => Err(anyhow::Error::from(e).context(format!("adding a member to room {room}")).into()),
        }
    }

    async fn remove_member(&self, room: RoomId, user: UserId) -> Result<(), MemberRemoveError> {
        let remove = MemberRemove {
            rooms: self.rooms().clone_with_type(),
            memberships: self.memberships(),
            room_id: id_text(room.as_uuid()),
            user_id: id_text(user.as_uuid()),
        };
        self.write_together(remove, |session, remove| remove.run(session).boxed())
            .await
            .with_context(|| format!("removing a member of room {room}"))?
    }

    async fn count_members(&self, room: RoomId) -> anyhow::Result<u32> {
        let count = self.memberships().count_documents(doc! { "room_id": id_text(room.as_uuid()) }).await?;
        Ok(u32::try_from(count)?)
    }

    async fn delete(&self, id: RoomId) -> anyhow::Result<bool> {
        let delete = RoomDelete {
            rooms: self.rooms(),
            memberships: self.memberships(),
            deleted: self.db().collection(DELETED_ROOMS),
            id: id_text(id.as_uuid()),
        };
        self.write_together(delete, |session, delete| delete.run(session).boxed())
            .await
            .with_context(|| format!("deleting room {id}"))
    }

    async fn deleted_rooms(&self, limit_to: u32) -> anyhow::Result<Vec<RoomId>> {
        if limit_to == 0 {
            return Ok(Vec::new());
        }
        let docs: Vec<Document> = self
            .db()
            .collection::<Document>(DELETED_ROOMS)
            .find(doc! {})
            .sort(doc! { "deleted_at": 1, "_id": 1 })
            .limit(limit(limit_to))
            .await?
            .try_collect()
            .await?;
        docs.iter().map(|d| parse_id(d.get_str("_id").context("a deleted room has no id")?)).collect()
    }

    async fn content_cleared(&self, id: RoomId) -> anyhow::Result<()> {
        self.db().collection::<Document>(DELETED_ROOMS).delete_one(doc! { "_id": id_text(id.as_uuid()) }).await?;
        Ok(())
    }

    async fn list_for_member(&self, user: UserId, page: RoomPage) -> anyhow::Result<Vec<Room>> {
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        let pipeline = [
            doc! { "$match": { "user_id": id_text(user.as_uuid()), "room_id": { "$gt": cursor(page) } } },
            doc! { "$sort": { "room_id": 1 } },
            doc! { "$limit": limit(page.limit) },
            doc! { "$lookup": { "from": ROOMS, "localField": "room_id", "foreignField": "_id", "as": "room" } },
            // A membership whose room is gone (a delete cut short without transactions) is dropped here.
            doc! { "$unwind": "$room" },
            doc! { "$replaceRoot": { "newRoot": "$room" } },
            join_members(),
            doc! { "$sort": { "_id": 1 } },
        ];
        let cursor = self.memberships().aggregate(pipeline).with_type::<RoomDoc>().await?;
        self.rooms_from(cursor).await
    }

    async fn list_public(&self, page: RoomPage) -> anyhow::Result<Vec<Room>> {
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        let pipeline = [
            doc! { "$match": { "visibility": Visibility::Public.as_str(), "_id": { "$gt": cursor(page) } } },
            doc! { "$sort": { "_id": 1 } },
            doc! { "$limit": limit(page.limit) },
            join_members(),
        ];
        let cursor = self.rooms().aggregate(pipeline).with_type::<RoomDoc>().await?;
        self.rooms_from(cursor).await
    }

    async fn room_ids_for_member(&self, user: UserId) -> anyhow::Result<Vec<RoomId>> {
        let docs: Vec<Document> = self
            .memberships()
            .clone_with_type::<Document>()
            .find(doc! { "user_id": id_text(user.as_uuid()) })
            .sort(doc! { "room_id": 1 })
            .projection(doc! { "_id": 0, "room_id": 1 })
            .await?
            .try_collect()
            .await?;
        docs.iter().map(|doc| parse_id(doc.get_str("room_id").context("a membership has no room id")?)).collect()
    }

    async fn is_member(&self, room: RoomId, user: UserId) -> anyhow::Result<bool> {
        let found = self
            .memberships()
            .clone_with_type::<Document>()
            .find_one(doc! { "room_id": id_text(room.as_uuid()), "user_id": id_text(user.as_uuid()) })
            .projection(doc! { "_id": 1 })
            .await?;
        Ok(found.is_some())
    }

    async fn insert_direct(&self, room: &Room) -> Result<(), InsertDirectError> {
        let write = self.room_write(RoomDoc::of(room)?, MembershipDoc::all_of(room));
        match self.write_together(write, |session, write| write.insert(session).boxed()).await {
            Ok(()) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(InsertDirectError::Duplicate),
            Err(e) => Err(anyhow::Error::from(e).context(format!("inserting direct room {}", room.id())).into()),
        }
    }

    async fn find_direct(&self, pair: DirectPair) -> anyhow::Result<Option<Room>> {
        let pipeline = [doc! { "$match": { "direct_key": pair.key() } }, join_members()];
        let cursor = self.rooms().aggregate(pipeline).with_type::<RoomDoc>().await?;
        Ok(self.rooms_from(cursor).await?.into_iter().next())
    }

    async fn mark_read(&self, room: RoomId, user: UserId, marker: ReadMarker) -> Result<MarkedRead, MarkReadError> {
        let seq = to_i64(marker.get())?;
        // `$max` is atomic on the one document: of concurrent marks the highest wins.
        let before = self
            .memberships()
            .clone_with_type::<Document>()
            .find_one_and_update(
                doc! { "room_id": id_text(room.as_uuid()), "user_id": id_text(user.as_uuid()) },
                doc! { "$max": { "last_read_seq": seq } },
            )
            .projection(doc! { "last_read_seq": 1 })
            .await
            .map_err(anyhow::Error::from)?
            .ok_or(MarkReadError::NotMember)?;
        let was = match before.get("last_read_seq") {
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Int32(n)) => i64::from(*n),
            _ => 0,
        };
        Ok(MarkedRead { marker: ReadMarker::restore(to_u64(was.max(seq))?), moved: seq > was })
    }

    async fn read_markers(&self, user: UserId, rooms: &[RoomId]) -> anyhow::Result<Vec<(RoomId, ReadMarker)>> {
        let mut markers = Vec::with_capacity(rooms.len());
        // In chunks, as `by_ids` asks: SecantusDB's `$in` is quadratic in the list.
        for chunk in rooms.chunks(50) {
            let ids: Vec<String> = chunk.iter().map(|r| id_text(r.as_uuid())).collect();
            let docs: Vec<MembershipDoc> = self
                .memberships()
                .find(doc! { "user_id": id_text(user.as_uuid()), "room_id": { "$in": ids } })
                .await?
                .try_collect()
                .await?;
            for membership in docs {
                markers.push((parse_id(&membership.room_id)?, ReadMarker::restore(to_u64(membership.last_read_seq)?)));
            }
        }
        Ok(markers)
    }
}
