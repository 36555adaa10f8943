"""The Lua scripts the shared limiter runs on the Redis server, one atomic step each.

Plain source text, nothing else: ``_RedisBacked._register`` hands each one to redis-py's
``register_script`` (``EVALSHA``, falling back to ``EVAL``), and ``check()`` loads them with
``SCRIPT LOAD``. How the bucket and the slots use them is in the package's documentation.
"""

from __future__ import annotations

from typing import Final

__all__ = ["_ACQUIRE_SLOT", "_COUNT_SLOTS", "_PAUSE", "_RENEW_SLOTS", "_TAKE"]

# The bucket. KEYS: state hash, queue (ticket -> arrival), ticket deadlines (ticket -> expiry),
# heavy (tickets wanting more than 1 token -> arrival). ARGV: rate, capacity, tokens wanted,
# ticket ("<tokens>:<hex>"), grace. Returns {1, 0} when granted, else {0, microseconds to wait}.
# Times are the server's, in seconds; numbers are written with %.17g / %.6f because Lua's own
# number-to-string keeps only 14 digits, which would round a Unix time to 10 microseconds.
_TAKE: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local ticket = ARGV[4]
local grace = tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 100)
if #gone > 0 then
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[3], unpack(gone))
  redis.call('ZREM', KEYS[4], unpack(gone))
end

local state = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local level = tonumber(state[1])
local last = tonumber(state[2])
if level == nil or last == nil then
  level = capacity
  last = now
end
if now > last then
  level = math.min(capacity, level + (now - last) * rate)
  last = now
end

local arrived = redis.call('ZSCORE', KEYS[2], ticket)
local ahead, heavy
if arrived then
  ahead = redis.call('ZRANK', KEYS[2], ticket)
  heavy = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. arrived)
else
  ahead = redis.call('ZCARD', KEYS[2])
  heavy = redis.call('ZRANGE', KEYS[4], 0, -1)
end
for _, other in ipairs(heavy) do
  if other ~= ticket then
    ahead = ahead + tonumber(string.match(other, '^(%d+):')) - 1
  end
end
local need = ahead + want
-- A full bucket can bank nothing more for the waiters ahead: they are late (on time, they would
-- have drained it), and every moment it stays full loses tokens. It serves whoever asks.
local enough = math.min(need, capacity)

if last <= now and level + rate * 0.000001 >= enough then
  level = level - want
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', level),
             'last', string.format('%.6f', last))
  redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - level) / rate * 1000) + 1000)
  if arrived then
    redis.call('ZREM', KEYS[2], ticket)
    redis.call('ZREM', KEYS[3], ticket)
    redis.call('ZREM', KEYS[4], ticket)
  end
  return {1, 0}
end

local wait = (last - now) + (need - level) / rate
if not arrived then
  local stamp = string.format('%.6f', now)
  redis.call('ZADD', KEYS[2], stamp, ticket)
  if want > 1 then redis.call('ZADD', KEYS[4], stamp, ticket) end
end
redis.call('ZADD', KEYS[3], string.format('%.6f', now + wait + grace), ticket)
local ttl = math.ceil((wait + grace) * 1000) + 1000
for i = 2, 4 do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return {0, math.ceil(wait * 1000000)}
"""

# A pause. KEYS: state hash. ARGV: rate, capacity, seconds. Empties the bucket and moves the
# time it is accounted to up to the pause's end (never back). Returns the pause's end, as
# microseconds from now.
_PAUSE: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local seconds = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local last = tonumber(redis.call('HGET', KEYS[1], 'last')) or now
local resume = math.max(last, now + seconds)
redis.call('HSET', KEYS[1], 'tokens', '0', 'last', string.format('%.6f', resume))
redis.call('PEXPIRE', KEYS[1], math.ceil((resume - now + capacity / rate) * 1000) + 1000)
return math.ceil((resume - now) * 1000000)
"""

# A slot. KEYS: holders (holder -> lease expiry), queue (ticket -> arrival), ticket deadlines.
# ARGV: limit, lease, holder, ticket, ticket lease. Returns {1, 0} when granted, else
# {0, microseconds until the earliest lease runs out}.
_ACQUIRE_SLOT: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local limit = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local holder = ARGV[3]
local ticket = ARGV[4]
local ticket_lease = tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 100)
if #gone > 0 then
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[3], unpack(gone))
end

local ahead = redis.call('ZRANK', KEYS[2], ticket)
local queued = ahead ~= false
if not queued then ahead = redis.call('ZCARD', KEYS[2]) end

if redis.call('ZCARD', KEYS[1]) + ahead < limit then
  redis.call('ZADD', KEYS[1], string.format('%.6f', now + lease), holder)
  if redis.call('PTTL', KEYS[1]) < lease * 1000 + 1000 then
    redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000) + 1000)
  end
  if queued then
    redis.call('ZREM', KEYS[2], ticket)
    redis.call('ZREM', KEYS[3], ticket)
  end
  return {1, 0}
end

if not queued then redis.call('ZADD', KEYS[2], string.format('%.6f', now), ticket) end
redis.call('ZADD', KEYS[3], string.format('%.6f', now + ticket_lease), ticket)
local ttl = math.ceil(ticket_lease * 1000) + 1000
for i = 2, 3 do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = 0
if #first == 2 then wait = math.max(0, tonumber(first[2]) - now) end
return {0, math.ceil(wait * 1000000)}
"""

# Renew leases. KEYS: holders. ARGV: lease, holder... Returns the holders whose lease had
# already run out and been taken away (they are not renewed: their slot may be someone else's).
_RENEW_SLOTS: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local lease = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local expiry = string.format('%.6f', now + lease)
local lost = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
  else
    table.insert(lost, ARGV[i])
  end
end
if redis.call('PTTL', KEYS[1]) < lease * 1000 + 1000 then
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000) + 1000)
end
return lost
"""

# Count live slots. KEYS: holders. Returns how many leases have not run out.
_COUNT_SLOTS: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.6f', now), '+inf')
"""
