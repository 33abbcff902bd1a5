"""Lua scripts of the Redis backend: every change of a room is one atomic script.

Each script keeps four things in step: the room's participants (`members`: identity ->
participant JSON; `owners`: identity -> "<node> <owner>"), how many of them each node holds
(`nodes`: node -> count, so that a message finds the nodes to go to without reading every
owner), its presence log (a stream whose entries carry the event JSON and its offset) and the
per-node set of held participants that the liveness reaper uses. Offsets come from HINCRBY
inside the script, so two nodes never race.

Event JSON is assembled by concatenation, never by cjson: cjson turns `[]` into `{}`.
Keys are derived from a prefix inside the scripts, so this needs a single Redis (or Sentinel),
not Redis Cluster.
"""

from __future__ import annotations

# KEYS: meta, log, members, owners, nodes.  ARGV[1..5]: room, new epoch, max events, max age ms, prefix
COMMON = r"""
redis.replicate_commands()
local meta, log, members, owners, counts = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local room, new_epoch = ARGV[1], ARGV[2]
local max_events, max_age, prefix = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A log without its meta has lost its history: start a new epoch.
local function ensure_meta()
  if redis.call('EXISTS', meta) == 0 then
    redis.call('DEL', log)
    redis.call('HSET', meta, 'epoch', new_epoch, 'offset', 0, 'created', string.format('%d', now_ms()))
  end
  return redis.call('HGET', meta, 'epoch')
end

local function append(kind, participant)
  local epoch = ensure_meta()
  local offset = redis.call('HINCRBY', meta, 'offset', 1)
  local ts = string.format('%d', now_ms())
  local event = '{"type":"' .. kind .. '","participant":' .. participant .. ',"epoch":"' .. epoch ..
    '","offset":' .. offset .. ',"ts":' .. ts .. '}'
  redis.call('XADD', log, 'MAXLEN', '~', max_events, '*', 'o', offset, 'e', event)
  redis.call('XTRIM', log, 'MINID', '~', string.format('%d', tonumber(ts) - max_age))
  return event
end

-- An empty room is forgotten after the retention age (a new epoch then); an occupied one never.
local function touch()
  if redis.call('HLEN', members) == 0 then
    redis.call('SREM', prefix .. ':rooms', room)
    for _, key in ipairs({meta, log}) do redis.call('PEXPIRE', key, max_age) end
  else
    redis.call('SADD', prefix .. ':rooms', room)
    for _, key in ipairs({meta, log}) do redis.call('PERSIST', key) end
  end
end

local function split_owner(value)
  local space = string.find(value, ' ', 1, true)
  return string.sub(value, 1, space - 1), string.sub(value, space + 1)
end

local function held_key(node) return prefix .. ':node:' .. node .. ':held' end
local function held_entry(identity, owner) return cjson.encode({room, identity, owner}) end

local function hold(identity, node, owner)
  redis.call('HSET', owners, identity, node .. ' ' .. owner)
  redis.call('SADD', held_key(node), held_entry(identity, owner))
  redis.call('HINCRBY', counts, node, 1)
end

local function release(identity, node, owner)
  redis.call('HDEL', owners, identity)
  redis.call('SREM', held_key(node), held_entry(identity, owner))
  if redis.call('HINCRBY', counts, node, -1) <= 0 then redis.call('HDEL', counts, node) end
end
"""

# ARGV[6..9]: identity, participant JSON, owner, node.
# -> {event, replaced "<node> <owner>" or "", epoch, offset, members...}
JOIN = (
    COMMON
    + r"""
local identity, participant, owner, node = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local previous = redis.call('HGET', owners, identity)
if previous then
  local old_node, old_owner = split_owner(previous)
  release(identity, old_node, old_owner)
end
redis.call('HSET', members, identity, participant)
hold(identity, node, owner)
local event = append(previous and 'update' or 'join', participant)
touch()
local reply = {event, previous or '', redis.call('HGET', meta, 'epoch'), redis.call('HGET', meta, 'offset')}
for _, p in ipairs(redis.call('HVALS', members)) do table.insert(reply, p) end
return reply
"""
)

# ARGV[6..7]: identity, owner ("" = whoever holds it).  -> event or nil
LEAVE = (
    COMMON
    + r"""
local identity, owner = ARGV[6], ARGV[7]
local previous = redis.call('HGET', owners, identity)
if not previous then return nil end
local old_node, old_owner = split_owner(previous)
if owner ~= '' and owner ~= old_owner then return nil end
local participant = redis.call('HGET', members, identity)
redis.call('HDEL', members, identity)
release(identity, old_node, old_owner)
local event = append('leave', participant)
touch()
return event
"""
)

# A compare-and-set: the caller merged the changes into the participant it read.
# ARGV[6..10]: identity, owner ("" = any), expected JSON, new JSON, kind.  -> {0} gone, {1} retry, {2, event}
UPDATE = (
    COMMON
    + r"""
local identity, owner, expected, participant, kind = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local previous = redis.call('HGET', owners, identity)
if not previous then return {0} end
local _, old_owner = split_owner(previous)
if owner ~= '' and owner ~= old_owner then return {0} end
if redis.call('HGET', members, identity) ~= expected then return {1} end
redis.call('HSET', members, identity, participant)
return {2, append(kind, participant)}
"""
)

# After an outage: tell Redis again which participants this node holds. Idempotent: one still
# held by us changes nothing, one Redis lost joins again (a new epoch if the room's log went
# with it), one now held by another connection is left alone and reported.
# ARGV[6]: node; ARGV[7..]: (identity, owner, participant JSON) triples.  -> identities taken over
REREGISTER = (
    COMMON
    + r"""
local node = ARGV[6]
local taken = {}
for i = 7, #ARGV, 3 do
  local identity, owner, participant = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local held = redis.call('HGET', owners, identity)
  if not held then
    redis.call('HSET', members, identity, participant)
    hold(identity, node, owner)
    append('join', participant)
  elseif held == node .. ' ' .. owner then
    redis.call('SADD', held_key(node), held_entry(identity, owner))
  else
    table.insert(taken, identity)
  end
end
touch()
return taken
"""
)

# A node that holds nobody leaves the cluster's lists, with what it kept there, unless it is
# alive (again): checked and done in one step, so that a node registering again meanwhile is
# never struck off. An entry that is not a (room, identity, owner) array holds nobody.
# KEYS: alive, held, media, inbox, nodes.  ARGV[1]: node.  -> 1 forgotten, 0 not
FORGET_NODE = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local ok, held = pcall(cjson.decode, entry)
  if ok and type(held) == 'table' and #held == 3 then return 0 end
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('SREM', KEYS[5], ARGV[1])
return 1
"""

# A room that local waiters watch is not forgotten while they wait (nor is its epoch).
KEEP = (
    COMMON
    + r"""
if redis.call('HLEN', members) == 0 and redis.call('EXISTS', meta) == 1 then touch() end
return 1
"""
)

# Events after (epoch, offset) if all are held, else a snapshot; creates an unknown room's log.
# ARGV[6..7]: epoch ("" = none), offset (-1 = none).
# -> {"s"|"e", epoch, offset, last stream id, participants... | events...}
RECOVER = (
    COMMON
    + r"""
local epoch, offset = ARGV[6], tonumber(ARGV[7])
local current = ensure_meta()
local last_offset = tonumber(redis.call('HGET', meta, 'offset'))
if redis.call('HLEN', members) == 0 then touch() end  -- being watched keeps an empty room
local newest = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #newest > 0 then last_id = newest[1][1] end
local function snapshot()
  local reply = {'s', current, last_offset, last_id}
  for _, p in ipairs(redis.call('HVALS', members)) do table.insert(reply, p) end
  return reply
end
if epoch ~= current or offset < 0 or offset > last_offset then return snapshot() end
local needed = last_offset - offset
if needed == 0 then return {'e', current, last_offset, last_id} end
if needed > max_events then return snapshot() end
local entries = redis.call('XREVRANGE', log, '+', '-', 'COUNT', needed)
if #entries < needed then return snapshot() end
local oldest = entries[#entries]
local oldest_ms = tonumber(string.match(oldest[1], '^(%d+)'))
if tonumber(oldest[2][2]) ~= offset + 1 or oldest_ms < now_ms() - max_age then return snapshot() end
local reply = {'e', current, last_offset, last_id}
for i = #entries, 1, -1 do table.insert(reply, entries[i][2][4]) end
return reply
"""
)

# Room media placement. `<prefix>:media:<room>` names the node holding the room's media (a lease
# its holder refreshes); `<prefix>:node:<id>:media` is the set of rooms a node holds, and
# `<prefix>:node:<id>:load` its load score (a short TTL: only a node that is alive right now
# publishes one). These scripts read keys they derive from the prefix (one Redis, no Cluster).

# The room's media node; if there is none (or it stopped publishing its load), the node with
# the lowest score takes it: rooms it holds + its published load.
# ARGV: prefix, room, lease ms, place ("1" to choose a node when there is none), the asking node
# (alive by definition: chosen when no node has published its load yet). -> node or false
PLACE_MEDIA = r"""
local prefix, room, ttl, place, asking = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local lease = prefix .. ':media:' .. room
local function node_key(node, what) return prefix .. ':node:' .. node .. ':' .. what end
local owner = redis.call('GET', lease)
if owner and redis.call('EXISTS', node_key(owner, 'load')) == 1 then return owner end
if place ~= '1' then return false end
local best, best_score = false, nil
for _, node in ipairs(redis.call('SMEMBERS', prefix .. ':nodes')) do
  local load = redis.call('GET', node_key(node, 'load'))
  if load then
    local score = redis.call('SCARD', node_key(node, 'media')) + tonumber(load)
    if best_score == nil or score < best_score then best, best_score = node, score end
  end
end
if not best then best = asking end
if owner then redis.call('SREM', node_key(owner, 'media'), room) end
redis.call('SET', lease, best, 'PX', ttl)
redis.call('SADD', node_key(best, 'media'), room)
return best
"""

# A node refreshes the leases it holds and publishes its load; its set of rooms (its score) is
# rebuilt to what its leases name: a room placed on it whose SFU never started, or whose lease
# lapsed while it was gone, stops counting. ARGV: prefix, node, lease ms, load, rooms... -> rooms lost
KEEP_MEDIA = r"""
local prefix, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rooms = prefix .. ':node:' .. node .. ':media'
redis.call('SET', prefix .. ':node:' .. node .. ':load', ARGV[4], 'PX', ttl)
local lost, kept = {}, {}
for i = 5, #ARGV do
  local lease = prefix .. ':media:' .. ARGV[i]
  local owner = redis.call('GET', lease)
  if owner == node then
    redis.call('PEXPIRE', lease, ttl)
  elseif not owner then
    redis.call('SET', lease, node, 'PX', ttl)  -- lapsed (Redis stalled or restarted): still ours
    redis.call('SADD', rooms, ARGV[i])
  end
  if owner and owner ~= node then table.insert(lost, ARGV[i]) else kept[ARGV[i]] = true end
end
for _, room in ipairs(redis.call('SMEMBERS', rooms)) do  -- the rest: placed here, not started
  if not kept[room] and redis.call('GET', prefix .. ':media:' .. room) ~= node then
    redis.call('SREM', rooms, room)
  end
end
return lost
"""

# A node lets go of a room's media. ARGV: prefix, node, room
RELEASE_MEDIA = r"""
local prefix, node, room = ARGV[1], ARGV[2], ARGV[3]
local lease = prefix .. ':media:' .. room
if redis.call('GET', lease) == node then redis.call('DEL', lease) end
redis.call('SREM', prefix .. ':node:' .. node .. ':media', room)
return 1
"""
