//! Conversions between domain values and their BSON representations, and triage of driver errors.

use anyhow::Context;
use domain::Timestamp;
use mongodb::error::{Error, ErrorKind, WriteFailure};

/// The server's code for a unique-index violation (E11000).
pub(crate) const DUPLICATE_KEY: i32 = 11_000;

/// Lowercase hyphenated text, so string order is UUIDv7 creation order.
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

/// BSON dates hold whole milliseconds, the precision the system clock adapter produces.
pub(crate) fn date(t: Timestamp) -> bson::DateTime {
    bson::DateTime::from_chrono(t)
}

pub(crate) fn timestamp(d: bson::DateTime) -> Timestamp {
    d.to_chrono()
}

/// A bound that saturates instead of failing: past `i64::MAX` no stored value can reach it.
pub(crate) fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn to_i64(n: u64) -> anyhow::Result<i64> {
    i64::try_from(n).with_context(|| format!("{n} does not fit in a BSON 64-bit integer"))
}

pub(crate) fn to_u64(n: i64) -> anyhow::Result<u64> {
    u64::try_from(n).with_context(|| format!("stored value {n} should not be negative"))
}

/// A positive limit for a query or `$limit` stage. Zero must be answered without asking the
/// server, which reads a zero limit as "no limit"; past `i64::MAX` every limit means "all".
pub(crate) fn limit(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// Whether the server refused a single write because it would break a unique index.
pub(crate) fn is_duplicate_key(error: &Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Deletes at most `max` documents matching `filter`, oldest by `order_by` first, and says how
/// many. Bounded, so a large backlog is purged in batches that never hold the server for long.
pub(crate) async fn delete_oldest<T: Send + Sync>(
    collection: &mongodb::Collection<T>,
    filter: bson::Document,
    order_by: &str,
    max: u32,
) -> anyhow::Result<u64> {
    use futures::TryStreamExt;
    if max == 0 {
        return Ok(0);
    }
    let ids: Vec<bson::Document> = collection
        .clone_with_type::<bson::Document>()
        .find(filter.clone())
        .sort(bson::doc! { order_by: 1 })
        .limit(limit(max))
        .projection(bson::doc! { "_id": 1 })
        .await?
        .try_collect()
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&bson::Bson> = ids.iter().filter_map(|d| d.get("_id")).collect();
    let mut bounded = filter;
    bounded.insert("_id", bson::doc! { "$in": ids });
    Ok(collection.delete_many(bounded).await?.deleted_count)
}
