//! `RoomRepository` on SQLite: rooms with their memberships, optimistic versioning and keyset pages,
//! direct rooms unique per pair, and read markers on the memberships.

use anyhow::Context;
use application::ports::{
    InsertDirectError, MarkReadError, MarkedRead, MemberAddError, MemberRemoveError, RoomPage, RoomRepository,
    UpdateRoomError,
};
use async_trait::async_trait;
use domain::{
    DirectPair, Member, MemberLimit, ReadMarker, Role, Room, RoomId, RoomKind, RoomName, Timestamp, UserId, Visibility,
};
use rusqlite::{params, ErrorCode, OptionalExtension, Row, Rows, Transaction, TransactionBehavior};

use crate::codec::{id_text, json_id_list, millis, parse_id, timestamp, to_i64, to_u64};
use crate::SqliteStore;

/// Reads rooms with their members in one statement: `{page}` is a query over `rooms` that picks the
/// rooms (already ordered and limited); every member row of each picked room follows, grouped by room.
fn rooms_with_members(page: &str) -> String {
    format!(
        "WITH page AS ({page})
         SELECT page.id AS room_id, page.name, page.visibility, page.kind, page.owner_id, page.member_limit,
                page.created_at, page.version,
                m.user_id AS member_id, m.role AS member_role, m.joined_at AS member_joined_at
         FROM page LEFT JOIN room_members m ON m.room_id = page.id
         ORDER BY page.id"
    )
}

/// The room columns of one joined row, waiting for the rest of its members.
struct PartialRoom {
    raw_id: String,
    id: RoomId,
    name: RoomName,
    visibility: Visibility,
    kind: RoomKind,
    owner: UserId,
    member_limit: MemberLimit,
    created_at: Timestamp,
    version: u64,
    members: Vec<Member>,
}

impl PartialRoom {
    fn read(raw_id: String, row: &Row<'_>) -> anyhow::Result<Self> {
        let name: String = row.get("name")?;
        let visibility: String = row.get("visibility")?;
        let owner: String = row.get("owner_id")?;
        let limit: i64 = row.get("member_limit")?;
        let kind: String = row.get("kind")?;
        Ok(Self {
            id: parse_id(&raw_id)?,
            name: RoomName::new(&name).with_context(|| format!("room {raw_id} has an invalid name {name:?}"))?,
            visibility: Visibility::parse(&visibility)
                .with_context(|| format!("room {raw_id} has an unknown visibility {visibility:?}"))?,
            kind: RoomKind::parse(&kind).with_context(|| format!("room {raw_id} has an unknown kind {kind:?}"))?,
            owner: parse_id(&owner)?,
            member_limit: u32::try_from(limit)
                .ok()
                .and_then(MemberLimit::new)
                .with_context(|| format!("room {raw_id} has an invalid member limit {limit}"))?,
            created_at: timestamp(row.get("created_at")?)?,
            version: to_u64(row.get("version")?)?,
            members: Vec::new(),
            raw_id,
        })
    }

    fn build(self) -> Room {
        Room::restore(
            self.id,
            self.name,
            self.visibility,
            self.kind,
            self.owner,
            self.members,
            self.member_limit,
            self.created_at,
            self.version,
        )
    }
}

fn member_from_row(row: &Row<'_>) -> anyhow::Result<Option<Member>> {
    let Some(user) = row.get::<_, Option<String>>("member_id")? else {
        return Ok(None);
    };
    let role: String = row.get("member_role")?;
    Ok(Some(Member {
        user_id: parse_id(&user)?,
        role: Role::parse(&role).with_context(|| format!("member {user} has an unknown role {role:?}"))?,
        joined_at: timestamp(row.get("member_joined_at")?)?,
    }))
}

/// Folds joined rows, ordered by room, back into rooms.
fn collect_rooms(mut rows: Rows<'_>) -> anyhow::Result<Vec<Room>> {
    let mut rooms = Vec::new();
    let mut current: Option<PartialRoom> = None;
    while let Some(row) = rows.next()? {
        let raw_id: String = row.get("room_id")?;
        let room = match current.take() {
            Some(room) if room.raw_id == raw_id => room,
            finished => {
                rooms.extend(finished.map(PartialRoom::build));
                PartialRoom::read(raw_id, row)?
            }
        };
        let room = current.insert(room);
        room.members.extend(member_from_row(row)?);
    }
    rooms.extend(current.map(PartialRoom::build));
    Ok(rooms)
}

/// Makes the stored memberships those of `room`. Memberships that stay are updated in place, so
/// their read markers stay with them.
fn write_members(tx: &Transaction<'_>, room: &Room) -> anyhow::Result<()> {
    let room_id = id_text(room.id().as_uuid());
    let kept = json_id_list(room.members().iter().map(|m| m.user_id.as_uuid()));
    tx.execute(
        "DELETE FROM room_members WHERE room_id = ?1 AND user_id NOT IN (SELECT value FROM json_each(?2))",
        params![room_id, kept],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO room_members (room_id, user_id, role, joined_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (room_id, user_id) DO UPDATE SET role = excluded.role, joined_at = excluded.joined_at",
    )?;
    for member in room.members() {
        insert.execute(params![
            room_id,
            id_text(member.user_id.as_uuid()),
            member.role.as_str(),
            millis(member.joined_at)
        ])?;
    }
    Ok(())
}

fn is_member(conn: &rusqlite::Connection, room_id: &str, user_id: &str) -> anyhow::Result<bool> {
    let mut stmt =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = ?1 AND user_id = ?2)")?;
    Ok(stmt.query_row([room_id, user_id], |row| row.get(0))?)
}

/// A change of one member still bumps the version, so an `update` from an older copy conflicts.
fn bump_version(tx: &Transaction<'_>, room_id: &str) -> anyhow::Result<()> {
    tx.execute("UPDATE rooms SET version = version + 1 WHERE id = ?1", [room_id])?;
    Ok(())
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _)
            if e.code == ErrorCode::ConstraintViolation && e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// Inserts a room and its members in one transaction.
fn insert_room(conn: &mut rusqlite::Connection, room: &Room) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO rooms (id, name, visibility, kind, direct_key, owner_id, member_limit, created_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id_text(room.id().as_uuid()),
            room.name().as_str(),
            room.visibility().as_str(),
            room.kind().as_str(),
            room.direct_pair().map(DirectPair::key),
            id_text(room.owner().as_uuid()),
            room.member_limit().get(),
            millis(room.created_at()),
            to_i64(room.version())?,
        ],
    )?;
    write_members(&tx, room)?;
    tx.commit()?;
    Ok(())
}

/// The lowest possible cursor: every id text sorts after the empty string.
fn cursor(page: RoomPage) -> String {
    page.after.map(|id| id_text(id.as_uuid())).unwrap_or_default()
}

#[async_trait]
impl RoomRepository for SqliteStore {
    async fn insert(&self, room: &Room) -> anyhow::Result<()> {
        let room = room.clone();
        self.run(move |conn| insert_room(conn, &room)).await
    }

    async fn get(&self, id: RoomId) -> anyhow::Result<Option<Room>> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&rooms_with_members("SELECT * FROM rooms WHERE id = ?1"))?;
            let rooms = collect_rooms(stmt.query([id_text(id.as_uuid())])?)?;
            Ok(rooms.into_iter().next())
        })
        .await
    }

    async fn update(&self, room: &Room) -> Result<(), UpdateRoomError> {
        let room = room.clone();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(anyhow::Error::from)?;
            let room_id = id_text(room.id().as_uuid());
            let stored: Option<i64> = tx
                .query_row("SELECT version FROM rooms WHERE id = ?1", [&room_id], |row| row.get(0))
                .optional()
                .map_err(anyhow::Error::from)?;
            let Some(stored) = stored else {
                return Err(UpdateRoomError::NotFound);
            };
            if stored != to_i64(room.version())? {
                return Err(UpdateRoomError::Conflict);
            }
            tx.execute(
                "UPDATE rooms SET name = ?2, visibility = ?3, owner_id = ?4, member_limit = ?5, version = version + 1
                 WHERE id = ?1",
                params![
                    room_id,
                    room.name().as_str(),
                    room.visibility().as_str(),
                    id_text(room.owner().as_uuid()),
                    room.member_limit().get(),
                ],
            )
            .map_err(anyhow::Error::from)?;
            write_members(&tx, &room)?;
            tx.commit().map_err(anyhow::Error::from)?;
            Ok(())
        })
        .await
    }

    async fn add_member(&self, room: RoomId, user: UserId, joined_at: Timestamp) -> Result<(), MemberAddError> {
        self.run(move |conn| {
            // IMMEDIATE takes the write lock before the count, so no other writer adds in between.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(anyhow::Error::from)?;
            let (room_id, user_id) = (id_text(room.as_uuid()), id_text(user.as_uuid()));
            let room: Option<(i64, String)> = tx
                .query_row("SELECT member_limit, kind FROM rooms WHERE id = ?1", [&room_id], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
                .map_err(anyhow::Error::from)?;
            let Some((limit, kind)) = room else {
                return Err(MemberAddError::NotFound);
            };
            if kind == RoomKind::Direct.as_str() {
                return Err(MemberAddError::Direct);
            }
            if is_member(&tx, &room_id, &user_id)? {
                return Err(MemberAddError::AlreadyMember);
            }
            let count: i64 = tx
                .query_row("SELECT COUNT(*) FROM room_members WHERE room_id = ?1", [&room_id], |row| row.get(0))
                .map_err(anyhow::Error::from)?;
            if count >= limit {
                return Err(MemberAddError::Full(u32::try_from(limit).unwrap_or(u32::MAX)));
            }
            tx.execute(
                "INSERT INTO room_members (room_id, user_id, role, joined_at) VALUES (?1, ?2, ?3, ?4)",
                params![room_id, user_id, Role::Member.as_str(), millis(joined_at)],
            )
            .map_err(anyhow::Error::from)?;
            bump_version(&tx, &room_id)?;
            tx.commit().map_err(anyhow::Error::from)?;
            Ok(())
        })
        .await
    }

    async fn remove_member(&self, room: RoomId, user: UserId) -> Result<(), MemberRemoveError> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(anyhow::Error::from)?;
            let (room_id, user_id) = (id_text(room.as_uuid()), id_text(user.as_uuid()));
            let room: Option<(String, String)> = tx
                .query_row("SELECT owner_id, kind FROM rooms WHERE id = ?1", [&room_id], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
                .map_err(anyhow::Error::from)?;
            match room {
                None => return Err(MemberRemoveError::NotFound),
                Some((_, kind)) if kind == RoomKind::Direct.as_str() => return Err(MemberRemoveError::Direct),
                Some((owner, _)) if owner == user_id => return Err(MemberRemoveError::Owner),
                Some(_) => {}
            }
            let removed = tx
                .execute("DELETE FROM room_members WHERE room_id = ?1 AND user_id = ?2", [&room_id, &user_id])
                .map_err(anyhow::Error::from)?;
            if removed == 0 {
                return Err(MemberRemoveError::NotMember);
            }
            bump_version(&tx, &room_id)?;
            tx.commit().map_err(anyhow::Error::from)?;
            Ok(())
        })
        .await
    }

    async fn count_members(&self, room: RoomId) -> anyhow::Result<u32> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT COUNT(*) FROM room_members WHERE room_id = ?1")?;
            let count: i64 = stmt.query_row([id_text(room.as_uuid())], |row| row.get(0))?;
            Ok(u32::try_from(count)?)
        })
        .await
    }

    async fn delete(&self, id: RoomId) -> anyhow::Result<bool> {
        // The port has no clock; `deleted_at` only orders the purge's work.
        let now = chrono::Utc::now().timestamp_millis();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            // Memberships go with the room through ON DELETE CASCADE.
            let deleted = tx.execute("DELETE FROM rooms WHERE id = ?1", [id_text(id.as_uuid())])? > 0;
            if deleted {
                tx.execute(
                    "INSERT INTO deleted_rooms (room_id, deleted_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![id_text(id.as_uuid()), now],
                )?;
            }
            tx.commit()?;
            Ok(deleted)
        })
        .await
    }

    async fn deleted_rooms(&self, limit: u32) -> anyhow::Result<Vec<RoomId>> {
        self.run(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT room_id FROM deleted_rooms ORDER BY deleted_at, room_id LIMIT ?1")?;
            let mut rows = stmt.query([limit])?;
            let mut ids = Vec::new();
            while let Some(row) = rows.next()? {
                ids.push(parse_id(&row.get::<_, String>(0)?)?);
            }
            Ok(ids)
        })
        .await
    }

    async fn content_cleared(&self, id: RoomId) -> anyhow::Result<()> {
        self.run(move |conn| {
            conn.execute("DELETE FROM deleted_rooms WHERE room_id = ?1", [id_text(id.as_uuid())])?;
            Ok(())
        })
        .await
    }

    async fn list_for_member(&self, user: UserId, page: RoomPage) -> anyhow::Result<Vec<Room>> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&rooms_with_members(
                "SELECT r.* FROM room_members mine JOIN rooms r ON r.id = mine.room_id
                 WHERE mine.user_id = ?1 AND mine.room_id > ?2
                 ORDER BY mine.room_id LIMIT ?3",
            ))?;
            let rooms = collect_rooms(stmt.query(params![id_text(user.as_uuid()), cursor(page), page.limit])?)?;
            Ok(rooms)
        })
        .await
    }

    async fn list_public(&self, page: RoomPage) -> anyhow::Result<Vec<Room>> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&rooms_with_members(
                "SELECT * FROM rooms WHERE visibility = 'public' AND id > ?1 ORDER BY id LIMIT ?2",
            ))?;
            let rooms = collect_rooms(stmt.query(params![cursor(page), page.limit])?)?;
            Ok(rooms)
        })
        .await
    }

    async fn room_ids_for_member(&self, user: UserId) -> anyhow::Result<Vec<RoomId>> {
        self.run(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT room_id FROM room_members WHERE user_id = ?1 ORDER BY room_id")?;
            let mut rows = stmt.query([id_text(user.as_uuid())])?;
            let mut ids = Vec::new();
            while let Some(row) = rows.next()? {
                ids.push(parse_id(&row.get::<_, String>(0)?)?);
            }
            Ok(ids)
        })
        .await
    }

    async fn is_member(&self, room: RoomId, user: UserId) -> anyhow::Result<bool> {
        self.run(move |conn| is_member(conn, &id_text(room.as_uuid()), &id_text(user.as_uuid()))).await
    }

    async fn insert_direct(&self, room: &Room) -> Result<(), InsertDirectError> {
        let room = room.clone();
        self.run(move |conn| match insert_room(conn, &room) {
            Ok(()) => Ok(()),
            Err(e) if e.downcast_ref::<rusqlite::Error>().is_some_and(is_unique_violation) => {
                Err(InsertDirectError::Duplicate)
            }
            Err(e) => Err(e.context("inserting a direct room").into()),
        })
        .await
    }

    async fn find_direct(&self, pair: DirectPair) -> anyhow::Result<Option<Room>> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&rooms_with_members("SELECT * FROM rooms WHERE direct_key = ?1"))?;
            let rooms = collect_rooms(stmt.query([pair.key()])?)?;
            Ok(rooms.into_iter().next())
        })
        .await
    }

    async fn mark_read(&self, room: RoomId, user: UserId, marker: ReadMarker) -> Result<MarkedRead, MarkReadError> {
        self.run(move |conn| {
            let (room_id, user_id) = (id_text(room.as_uuid()), id_text(user.as_uuid()));
            let seq = to_i64(marker.get())?;
            // The one connection serialises this with every other write: the max is atomic.
            let moved = conn
                .prepare_cached(
                    "UPDATE room_members SET last_read_seq = ?3
                     WHERE room_id = ?1 AND user_id = ?2 AND last_read_seq < ?3",
                )
                .and_then(|mut stmt| stmt.execute(params![room_id, user_id, seq]))
                .map_err(anyhow::Error::from)?
                > 0;
            let stored: Option<i64> = conn
                .prepare_cached("SELECT last_read_seq FROM room_members WHERE room_id = ?1 AND user_id = ?2")
                .and_then(|mut stmt| stmt.query_row(params![room_id, user_id], |row| row.get(0)).optional())
                .map_err(anyhow::Error::from)?;
            let stored = stored.ok_or(MarkReadError::NotMember)?;
            Ok(MarkedRead { marker: ReadMarker::restore(to_u64(stored)?), moved })
        })
        .await
    }

    async fn read_markers(&self, user: UserId, rooms: &[RoomId]) -> anyhow::Result<Vec<(RoomId, ReadMarker)>> {
        let list = json_id_list(rooms.iter().map(RoomId::as_uuid));
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT room_id, last_read_seq FROM room_members
                 WHERE user_id = ?1 AND room_id IN (SELECT value FROM json_each(?2))",
            )?;
            let mut rows = stmt.query(params![id_text(user.as_uuid()), list])?;
            let mut markers = Vec::new();
            while let Some(row) = rows.next()? {
                markers.push((parse_id(&row.get::<_, String>(0)?)?, ReadMarker::restore(to_u64(row.get(1)?)?)));
            }
            Ok(markers)
        })
        .await
    }
}
