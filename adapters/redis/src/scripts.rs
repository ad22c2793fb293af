//! The Lua scripts that make each multi-key step of the message log, and each presence change,
//! atomic.
//!
//! Every script starts with a `#!lua` shebang: Redis 7 then refuses it up front when memory is
//! full, instead of failing halfway through its writes.
//!
//! Each script touches the keys of one hash slot only, every one of them passed in KEYS, so they
//! run unchanged on a Redis Cluster: a room's keys and the archive queue of the room's slot share
//! that slot (see `keys.rs`).

use redis::Script;

const SHEBANG: &str = "#!lua\n";

const HELPERS: &str = r"
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local function deliveries(stream, group, id)
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  if p[1] then return tonumber(p[1][4]) end
  return 0
end

-- Moves one entry to the dead-letter stream and out of the queue, and reports its room and seq:
-- the caller then takes it out of the room's pending set (the dead-letter stream is its durable
-- copy now, and keeping it pending would stop the room's cache from ever being trimmed again).
local function dead_letter(stream, dead, group, id, fields, count, reason, dropped)
  redis.call('XADD', dead, '*', 'origin', id, 'deliveries', count, 'reason', reason, unpack(fields))
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  dropped[#dropped + 1] = id
  dropped[#dropped + 1] = tostring(count)
  dropped[#dropped + 1] = field(fields, 'room') or ''
  dropped[#dropped + 1] = field(fields, 'seq') or ''
end

-- Keeps at most `cap` newest messages, but never removes one at or above the room's oldest
-- unarchived seq. Removal is always a prefix by score, so the cache stays a contiguous run of seqs.
local function trim(cache, pending, cap)
  local excess = redis.call('ZCARD', cache) - cap
  if excess <= 0 then return end
  local edge = redis.call('ZRANGE', cache, excess - 1, excess - 1, 'WITHSCORES')
  local cut = tonumber(edge[2])
  local oldest = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')
  if oldest[2] then cut = math.min(cut, tonumber(oldest[2]) - 1) end
  if cut >= 1 then redis.call('ZREMRANGEBYSCORE', cache, '-inf', string.format('%d', cut)) end
end
";

/// KEYS: seq, cache, pending, the slot's archive stream, the slot's counters marker, [dedupe].
/// ARGV: message JSON without seq, room id, dedupe TTL in seconds, consumer group, and for a change
/// that alters its cached target: the target's seq, the seq the change must get, the target's
/// cached JSON, and its JSON with the change applied. Returns `{1, json, queued}` when created
/// (`queued`: the stream's length after it), `{0, json, 0}` for a known dedupe key (whose TTL
/// starts again), `{2, '', 0}`, storing nothing, when the counters marker is gone: the node lost
/// its data, and with it the counters, which must be raised from the archive before any seq is
/// given; and `{3, '', 0}`, storing nothing, when the change was computed against a target or a
/// seq that another append has since changed: the caller reads them again and retries.
///
/// The seq is spliced into the JSON as its first field (`{"seq":N,` + the rest), so the stored
/// message is complete and exact without decoding and re-encoding it in Lua; for the same reason
/// the changed target comes whole from the caller, which applies the change as every store does.
const APPEND: &str = r#"
if redis.call('EXISTS', KEYS[5]) == 0 then return {2, '', 0} end
local dedupe = KEYS[6]
if dedupe then
  local original = redis.call('GET', dedupe)
  if original then
    -- A write, so that a WAIT after this script covers the original too, whoever wrote it.
    redis.call('EXPIRE', dedupe, ARGV[3])
    return {0, original, 0}
  end
end
local target = ARGV[5]
if target then
  if tonumber(redis.call('GET', KEYS[1]) or '0') + 1 ~= tonumber(ARGV[6]) then return {3, '', 0} end
  if redis.call('ZRANGEBYSCORE', KEYS[2], target, target)[1] ~= ARGV[7] then return {3, '', 0} end
end
local seq = string.format('%d', redis.call('INCR', KEYS[1]))
local message = '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2)
if target then
  redis.call('ZREM', KEYS[2], ARGV[7])
  redis.call('ZADD', KEYS[2], target, ARGV[8])
end
redis.call('ZADD', KEYS[2], seq, message)
redis.call('ZADD', KEYS[3], seq, seq)
if redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[4], ARGV[4], '0', 'MKSTREAM')
end
redis.call('XADD', KEYS[4], '*', 'room', ARGV[2], 'seq', seq, 'msg', message)
if dedupe then redis.call('SET', dedupe, message, 'EX', ARGV[3]) end
return {1, message, redis.call('XLEN', KEYS[4])}
"#;

/// KEYS: the slot's archive stream and dead-letter stream. ARGV: group, consumer, how many,
/// reclaim idle ms, max deliveries. Returns `{{id, json, ...}, {id, deliveries, room, seq, ...},
/// length}`: the batch, what was dead-lettered instead, and the stream's length after.
const CLAIM: &str = r"
local stream, dead = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local want = tonumber(ARGV[3])
local idle = ARGV[4]
local max_deliveries = tonumber(ARGV[5])
local out, dropped = {}, {}
if redis.call('EXISTS', stream) == 0 then return {out, dropped, 0} end

local function have() return #out / 2 end

local function take(entry, redelivered)
  local id, fields = entry[1], entry[2]
  if not fields then
    -- Pending but gone from the stream: nothing is left to archive.
    redis.call('XACK', stream, group, id)
    return
  end
  if redelivered then
    local count = deliveries(stream, group, id)
    if count > max_deliveries then
      dead_letter(stream, dead, group, id, fields, count, 'delivered too often', dropped)
      return
    end
  end
  out[#out + 1] = id
  out[#out + 1] = field(fields, 'msg') or ''
end

-- 1. This consumer's own unacknowledged entries, oldest first (re-reading them counts a delivery).
local cursor = '0'
while have() < want do
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want - have(), 'STREAMS', stream, cursor)
  if not r or not r[1] or #r[1][2] == 0 then break end
  for _, entry in ipairs(r[1][2]) do
    take(entry, true)
    cursor = entry[1]
  end
end

-- 2. Entries other consumers left idle too long; each call scans a bounded part of the pending list.
local start = '0-0'
for _ = 1, 10 do
  if have() >= want then break end
  local r = redis.call('XAUTOCLAIM', stream, group, consumer, idle, start, 'COUNT', want - have())
  for _, entry in ipairs(r[2]) do take(entry, true) end
  start = r[1]
  if start == '0-0' then break end
end

-- 3. New entries, never delivered before.
if have() < want then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want - have(), 'STREAMS', stream, '>')
  if r and r[1] then
    for _, entry in ipairs(r[1][2]) do take(entry, false) end
  end
end

return {out, dropped, redis.call('XLEN', stream)}
";

/// KEYS: the slot's archive stream, then each room's pending set and cache (`2k`, `2k + 1` for the
/// k-th room). ARGV: group, cache per room, the number of rooms n, the n room ids, then pairs of
/// entry id and room number k. Acknowledges and deletes each entry that was handed out and belongs
/// to its room, forgets it as unarchived, then trims the rooms it touched. Returns `{acked,
/// length}`.
const ACK: &str = r"
local stream, group, cap, n = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local touched, acked = {}, 0
for i = 4 + n, #ARGV, 2 do
  local id, k = ARGV[i], tonumber(ARGV[i + 1])
  local e = redis.call('XRANGE', stream, id, id)
  local fields = e[1] and e[1][2]
  -- Only an entry that was handed out may go: an id nobody claimed is ignored, never dropped.
  if fields and field(fields, 'room') == ARGV[3 + k] and redis.call('XACK', stream, group, id) == 1 then
    acked = acked + 1
    redis.call('XDEL', stream, id)
    redis.call('ZREM', KEYS[2 * k], field(fields, 'seq'))
    touched[k] = true
  end
end
for k in pairs(touched) do trim(KEYS[2 * k + 1], KEYS[2 * k], cap) end
return {acked, redis.call('XLEN', stream)}
";

/// KEYS: the slot's archive stream and dead-letter stream. ARGV: group, reason, entry ids. Moves
/// entries that cannot be decoded straight to the dead-letter stream. Returns what moved, as
/// `{id, deliveries, room, seq, ...}`.
const DEAD_LETTER: &str = r"
local stream, dead, group, reason = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local dropped = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local e = redis.call('XRANGE', stream, id, id)
  if e[1] then
    dead_letter(stream, dead, group, id, e[1][2], deliveries(stream, group, id), reason, dropped)
  end
end
return dropped
";

/// KEYS: seq, cache. ARGV: read marker, cap. The room-list view of a room: `{last seq or '',
/// lowest cached seq or '', newest cached message (not a change entry) or '', how many messages
/// (not change entries) past the marker are cached, at most cap}`. A change entry's body is
/// `{"type":"edit"|"delete"|"react"…}`; a text cannot forge that, as its quotes are escaped.
const TAILS: &str = r#"
local function is_change(json)
  return string.find(json, '"body":{"type":"edit"', 1, true)
    or string.find(json, '"body":{"type":"delete"', 1, true)
    or string.find(json, '"body":{"type":"react"', 1, true)
end
local last = redis.call('GET', KEYS[1]) or ''
local lowest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2] or ''
local newest, from = '', 0
while newest == '' do
  local chunk = redis.call('ZREVRANGE', KEYS[2], from, from + 63)
  for _, json in ipairs(chunk) do
    if not is_change(json) then newest = json; break end
  end
  if #chunk < 64 then break end
  from = from + 64
end
local cap, count = tonumber(ARGV[2]), 0
if cap > 0 then
  for _, json in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')) do
    if not is_change(json) then
      count = count + 1
      if count >= cap then break end
    end
  end
end
return {last, lowest, newest, count}
"#;

/// KEYS: seq. ARGV: seq. Raises the counter to ARGV[1] unless it is already at least that.
const RAISE_SEQ: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
";

/// Presence: sets this node's mark (field ARGV[1], lapsing at ARGV[2] ms), keeps the key a while longer,
/// and answers whether another node's mark is still live (ARGV[3] = now in ms): 1 when none is.
const CAME_ONLINE: &str = r"
local others = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if fields[i] ~= ARGV[1] and tonumber(fields[i + 1]) > tonumber(ARGV[3]) then others = others + 1 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if others == 0 then return 1 else return 0 end
";

/// Removes this node's mark (ARGV[1]) and answers 1 when no other live mark is left.
const WENT_OFFLINE: &str = r"
redis.call('HDEL', KEYS[1], ARGV[1])
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if tonumber(fields[i + 1]) > tonumber(ARGV[2]) then return 0 end
end
return 1
";

/// The loaded scripts; `Script` sends EVALSHA and reloads itself after a Redis restart.
#[derive(Debug, Clone)]
pub(crate) struct Scripts {
    pub append: Script,
    pub claim: Script,
    pub ack: Script,
    pub dead_letter: Script,
    pub raise_seq: Script,
    pub tails: Script,
    pub came_online: Script,
    pub went_offline: Script,
}

impl Scripts {
    pub fn new() -> Self {
        let with_helpers = |body: &str| Script::new(&format!("{SHEBANG}{HELPERS}{body}"));
        Self {
            append: Script::new(&format!("{SHEBANG}{APPEND}")),
            claim: with_helpers(CLAIM),
            ack: with_helpers(ACK),
            dead_letter: with_helpers(DEAD_LETTER),
            raise_seq: Script::new(&format!("{SHEBANG}{RAISE_SEQ}")),
            tails: Script::new(&format!("{SHEBANG}{TAILS}")),
            came_online: Script::new(&format!("{SHEBANG}{CAME_ONLINE}")),
            went_offline: Script::new(&format!("{SHEBANG}{WENT_OFFLINE}")),
        }
    }
}
