"""The Lua scripts fleet mode runs on Redis, and how they are run.

Each script touches only keys passed in ``KEYS``, all with the namespace's hash tag,
so it runs unchanged on Redis Cluster. Times are integer microseconds: a ``TIME`` of
about 1.7e15 µs is exact in Lua's doubles, and ``string.format('%.0f')`` writes it
back without the rounding of ``tostring``. Every key written gets a TTL in the same
script, so nothing outlives its use even when a process dies mid-way.

The clock is the server's (``TIME``), so hosts with skewed clocks agree. A service
that refuses ``TIME`` inside scripts makes ``redis.pcall`` return an error; the
script then uses the caller's wall clock, sent as ``ARGV[1]`` with every call.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ._bounded import bounded

# ``ARGV[1]`` of every script that reads the time is the caller's wall clock in µs.
_PRELUDE = """
local function now_us()
  local t = redis.pcall('TIME')
  if type(t) == 'table' and t[1] then
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return tonumber(ARGV[1])
end

local function num(x)
  return string.format('%.0f', x)
end

-- Keep a key until `us` from now, plus a second: never forever, never too early.
local function keep_for(key, us)
  redis.call('PEXPIRE', key, math.floor(us / 1000) + 1000)
end

-- GCRA against the gate hash (t: theoretical arrival time, p: paused until,
-- b: burst tolerance). Returns the wait in µs and whether the slot was booked:
-- a slot further away than max_wait (if max_wait >= 0) is not booked.
local function book(gate, now, interval, tol, max_wait)
  local g = redis.call('HMGET', gate, 't', 'p')
  local paused = tonumber(g[2]) or 0
  local start = math.max(now, paused)
  if interval <= 0 then
    local wait = start - now
    if max_wait >= 0 and wait > max_wait then return wait, 0 end
    return wait, 1
  end
  local tat = math.max(tonumber(g[1]) or now, start)
  local at = math.max(start, tat - tol)
  local wait = at - now
  if max_wait >= 0 and wait > max_wait then return wait, 0 end
  local next_tat = tat + interval
  redis.call('HSET', gate, 't', num(next_tat), 'b', num(tol))
  keep_for(gate, math.max(next_tat, paused) - now)
  return wait, 1
end
"""

# KEYS: gate. ARGV: now, interval µs (0: no rate), tolerance µs, max wait µs (-1: none).
# Returns {wait µs, booked 0/1}.
_RESERVE = """
local wait, booked = book(KEYS[1], now_us(), tonumber(ARGV[2]), tonumber(ARGV[3]),
                          tonumber(ARGV[4]))
return {wait, booked}
"""

# KEYS: lease, members, ears, gate, latest. ARGV: now, owner, lease ms, interval µs
# (-1: book no slot), tolerance µs, max wait µs, an observation to store ('' : none),
# grace ms, channel, the message announcing a new listener. Returns {held 0/1, lease ms left, wait µs (-1: none), booked, holder,
# listened 0/1}. A lease whose holder's heartbeat has lapsed (it is in `members` with a
# score in the past) is taken over at once; a holder not in `members` (no heartbeat
# seen, or the set was lost) keeps its lease until it lapses. A claimant that does not
# get the lease listens to the task: `ears` says so to the holder (and the channel, so
# that it publishes what it saw last at once); a holder nobody listens to stores each
# change with its next claim instead of publishing it.
_CLAIM = """
local lease, owner, ms, grace = KEYS[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[8])
local holder = redis.call('GET', lease)
if holder and holder ~= owner then
  local alive_until = redis.call('ZSCORE', KEYS[2], holder)
  if not alive_until or tonumber(alive_until) > now_us() then
    local left = redis.call('PTTL', lease)
    if redis.call('SET', KEYS[3], '1', 'PX', math.max(left, 0) + grace, 'NX') then
      redis.call('PUBLISH', ARGV[9], ARGV[10])
    else
      redis.call('PEXPIRE', KEYS[3], math.max(left, 0) + grace)
    end
    return {0, left, -1, 0, holder, 1}
  end
end
redis.call('SET', lease, owner, 'PX', ms)
local listened = redis.call('PEXPIRE', KEYS[3], ms + grace)
if ARGV[7] ~= '' then
  redis.call('SET', KEYS[5], 'U' .. ARGV[7], 'PX', ms + grace)
end
local interval = tonumber(ARGV[4])
if interval < 0 then
  return {1, ms, -1, 0, owner, listened}
end
local wait, booked = book(KEYS[4], now_us(), interval, tonumber(ARGV[5]), tonumber(ARGV[6]))
return {1, ms, wait, booked, owner, listened}
"""

# KEYS: lease. ARGV: owner, channel, release message. Returns 1 if the lease was ours
# and is gone; the other processes are told at once, so one of them polls the task.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS: members, then each task's latest, lease and ears. ARGV: now, owner, lease ms,
# grace ms, channel, the start of the message announcing new listeners. One message
# names (comma-separated) the tasks the joiner is the first to listen to and that were
# polled already: their holders publish what they saw last. For each task: its stored observation, its lease's holder and ms left; the
# lease is taken first when nobody alive holds it (a joiner polls the tasks nobody
# polls), else the joiner is one of the task's listeners (`ears`).
_JOIN = """
local owner, ms, grace = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = nil
local out = {}
local heard = {}
for i = 2, #KEYS, 3 do
  local lease = KEYS[i + 1]
  local holder = redis.call('GET', lease)
  if holder and holder ~= owner then
    local alive_until = redis.call('ZSCORE', KEYS[1], holder)
    if alive_until then
      now = now or now_us()
      if tonumber(alive_until) <= now then
        holder = false
      end
    end
  end
  if not holder then
    redis.call('SET', lease, owner, 'PX', ms)
    holder = owner
  elseif holder ~= owner then
    local keep = math.max(redis.call('PTTL', lease), 0) + grace
    local stored = redis.call('GET', KEYS[i])
    if redis.call('SET', KEYS[i + 2], '1', 'PX', keep, 'NX') and stored then
      heard[#heard + 1] = string.sub(KEYS[i + 2], -16)
    else
      redis.call('PEXPIRE', KEYS[i + 2], keep)
    end
  end
  out[#out + 1] = redis.call('GET', KEYS[i]) or false
  out[#out + 1] = holder
  out[#out + 1] = redis.call('PTTL', lease)
end
if #heard > 0 then
  redis.call('PUBLISH', ARGV[5], ARGV[6] .. table.concat(heard, ',') .. '\\n0\\n')
end
return out
"""

# KEYS: members. ARGV: now, owner, heartbeat ttl µs. Records that `owner` lives for
# another ttl, forgets processes dead for a minute, and returns {server now µs, the
# members and their heartbeats' ends (ZRANGE WITHSCORES)}.
_HEARTBEAT = """
local now = now_us()
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], num(now + ttl), ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now - 60000000))
keep_for(KEYS[1], ttl + 60000000)
return {num(now), redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}
"""

# KEYS: latest, lease. ARGV: owner, final 0/1, payload, final ttl ms, grace ms,
# renew ms (0: no renewal), channel, message header.
# Stores the observation, renews our lease if asked, and fans the update out.
# A final observation shortens the lease, whoever holds it, to the final ttl.
# Returns the lease's ms left (0: none).
_PUBLISH = """
local latest, lease = KEYS[1], KEYS[2]
local final = ARGV[2] == '1'
local left = redis.call('PTTL', lease)
if final then
  local ttl = tonumber(ARGV[4])
  if left == -1 or left > ttl then
    redis.call('PEXPIRE', lease, ttl)
    left = ttl
  end
  redis.call('SET', latest, 'F' .. ARGV[3], 'PX', ttl)
else
  local renew = tonumber(ARGV[6])
  if renew > 0 and redis.call('GET', lease) == ARGV[1] then
    redis.call('PEXPIRE', lease, renew)
    left = renew
  end
  redis.call('SET', latest, 'U' .. ARGV[3], 'PX', math.max(left, 0) + tonumber(ARGV[5]))
end
left = math.max(left, 0)
redis.call('PUBLISH', ARGV[7], ARGV[8] .. '\\n' .. num(left) .. '\\n' .. ARGV[3])
return left
"""

# KEYS: gate. ARGV: now, pause µs, channel, message header.
# Pauses the fleet unless a pause already covers it; the rate's timeline moves past
# the pause's end by the burst tolerance, so the fleet resumes at the rate, not in a
# burst. Returns {extended 0/1, µs until the pause ends}.
_PAUSE = """
local now = now_us()
local resume_at = now + tonumber(ARGV[2])
local g = redis.call('HMGET', KEYS[1], 't', 'p', 'b')
local paused = tonumber(g[2]) or 0
if paused >= resume_at then
  return {0, paused - now}
end
local tat = math.max(tonumber(g[1]) or now, resume_at + (tonumber(g[3]) or 0))
redis.call('HSET', KEYS[1], 'p', num(resume_at), 't', num(tat))
keep_for(KEYS[1], tat - now)
redis.call('PUBLISH', ARGV[3], ARGV[4] .. '\\n' .. ARGV[2])
return {1, tonumber(ARGV[2])}
"""

# KEYS: gate. ARGV: now, interval µs. Gives one unused slot back, unless a pause is
# on (it has re-timed every slot already). Returns 1 if a slot was given back.
_REFUND = """
local now = now_us()
local g = redis.call('HMGET', KEYS[1], 't', 'p')
local tat = tonumber(g[1])
if not tat or (tonumber(g[2]) or 0) > now then
  return 0
end
local back = math.max(now, tat - tonumber(ARGV[2]))
if back >= tat then
  return 0
end
redis.call('HSET', KEYS[1], 't', num(back))
return 1
"""


class LuaScript:
    """A script's source and its SHA1, for ``EVALSHA`` with ``EVAL`` as the fallback."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, body: str, *, uses_prelude: bool = True) -> None:
        self.name = name
        self.source = (_PRELUDE + body) if uses_prelude else body
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA1)

    def __repr__(self) -> str:
        return f"<LuaScript {self.name} {self.sha[:8]}>"


RESERVE = LuaScript("reserve", _RESERVE)
CLAIM = LuaScript("claim", _CLAIM)
RELEASE = LuaScript("release", _RELEASE, uses_prelude=False)
PUBLISH = LuaScript("publish", _PUBLISH)
PAUSE = LuaScript("pause", _PAUSE)
REFUND = LuaScript("refund", _REFUND)
HEARTBEAT = LuaScript("heartbeat", _HEARTBEAT)
JOIN = LuaScript("join", _JOIN)
ALL = (RESERVE, CLAIM, RELEASE, PUBLISH, PAUSE, REFUND, HEARTBEAT, JOIN)


def is_noscript(error: BaseException) -> bool:
    """Whether ``error`` says the server does not have the script.

    It has none after a restart, a failover or ``SCRIPT FLUSH``; redis-py and
    valkey-py both name the error so.
    """
    return type(error).__name__ == "NoScriptError" or str(error).startswith("NOSCRIPT")


async def run_script(
    client: Any,
    script: LuaScript,
    keys: tuple[str, ...],
    args: tuple[object, ...],
    timeout: float,
) -> tuple[Any, bool]:
    """Run ``script`` by its SHA; if the server lost it, send its source (``EVAL``).

    Each of the two calls is bounded by ``timeout`` seconds.

    ``EVAL`` also caches the script again, so the next call is a plain ``EVALSHA``.

    Returns:
        The script's answer, and whether the source had to be sent.
    """
    try:
        return await bounded(client.evalsha(script.sha, len(keys), *keys, *args), timeout), False
    except Exception as error:
        if not is_noscript(error):
            raise
    return await bounded(client.eval(script.source, len(keys), *keys, *args), timeout), True
