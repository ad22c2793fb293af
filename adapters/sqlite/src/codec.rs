//! Conversions between domain values and their SQLite column representations.

use anyhow::Context;
use domain::Timestamp;

/// Instants are stored as whole milliseconds, the precision the system clock adapter produces.
pub(crate) fn millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn timestamp(ms: i64) -> anyhow::Result<Timestamp> {
    chrono::DateTime::from_timestamp_millis(ms).with_context(|| format!("stored instant {ms} ms is out of range"))
}

/// Lowercase hyphenated text, so SQLite's text order is UUIDv7 creation order.
pub(crate) fn id_text(id: uuid::Uuid) -> String {
    id.hyphenated().to_string()
}

/// Parses any of the domain's UUID-backed ids.
pub(crate) fn parse_id<T>(raw: &str) -> anyhow::Result<T>
where
    T: std::str::FromStr<Err = uuid::Error>,
{
    raw.parse().with_context(|| format!("stored id {raw:?} is not a UUID"))
}

pub(crate) fn to_i64(n: u64) -> anyhow::Result<i64> {
    i64::try_from(n).with_context(|| format!("{n} does not fit in a SQLite integer"))
}

pub(crate) fn to_u64(n: i64) -> anyhow::Result<u64> {
    u64::try_from(n).with_context(|| format!("stored value {n} should not be negative"))
}

/// A count or bound that saturates instead of failing: past `i64::MAX` every limit means "all".
pub(crate) fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Builds a JSON array of ids for `json_each`, so one statement can take a list of any length.
/// UUID text is hex digits and hyphens only, so no escaping is needed.
pub(crate) fn json_id_list(ids: impl IntoIterator<Item = uuid::Uuid>) -> String {
    let quoted: Vec<String> = ids.into_iter().map(|id| format!("\"{}\"", id.hyphenated())).collect();
    format!("[{}]", quoted.join(","))
}

/// Deletes up to `limit` rows of `table` whose instant `column` is before `cutoff`, oldest first.
/// Bounded so a large backlog is purged in short statements that never hold the write lock for
/// long. `table` and `column` are this adapter's own names, never input.
pub(crate) fn delete_oldest_before(
    conn: &rusqlite::Connection,
    table: &str,
    column: &str,
    cutoff: Timestamp,
    limit: u32,
) -> anyhow::Result<u64> {
    let deleted = conn.execute(
        &format!(
            "DELETE FROM {table} WHERE id IN (
                 SELECT id FROM {table} WHERE {column} < ?1 ORDER BY {column} LIMIT ?2)"
        ),
        rusqlite::params![millis(cutoff), limit],
    )?;
    Ok(deleted as u64)
}
