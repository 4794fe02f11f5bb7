-- Shared by every script (client/lua/common.lua); the loader puts it first.

local FORMAT = '1'  -- the value of a record's ownership marker field 'yadtq'

local function is_terminal(st)
  return st == 'success' or st == 'failed' or st == 'cancelled'
end

-- Who owns KEYS[1], the key a task id names: 'ours' (a YADTQ record: a hash
-- with the marker field), 'none' (absent: a script may create it), or else
-- the key's type ('string', 'hash' without the marker, 'zset', ...): another
-- application's key, or one of YADTQ's internal keys, which no script touches.
local function owner(key)
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' then return 'none' end
  if t == 'hash' and redis.call('HEXISTS', key, 'yadtq') == 1 then return 'ours' end
  return t
end

-- The caller belongs to an older generation of the cluster: its epoch is
-- lower than the one at the epoch key (absent means 0).
-- An epoch key overwritten with another type while the cluster runs (the
-- supervisor refuses to start on one) counts as absent rather than failing
-- every script: the children's lease check still fences an old generation.
local function stale(epoch_key, mine)
  if redis.call('TYPE', epoch_key)['ok'] ~= 'string' then return false end
  local current = tonumber(redis.call('GET', epoch_key) or '0') or 0
  return (tonumber(mine) or 0) < current
end

-- A count kept in a hash field (a record's attempt, retries, worker_deaths; a
-- stats counter), read totally: absent, or damaged into anything but a whole
-- number >= 0 (say by hand), it counts as 0. Never an error: a script that
-- failed on one record's value would fail on every read of its message, and
-- the process reading it with it (DESIGN §4.6).
local function count(key, field)
  local n = tonumber(redis.call('HGET', key, field))
  if n == nil or n < 0 or n >= 2 ^ 53 or n ~= math.floor(n) then return 0 end
  return n
end

-- Add one to a count and return it: HINCRBY, but total (HINCRBY fails on a
-- field that is not an integer).
local function bump(key, field)
  local n = count(key, field) + 1
  redis.call('HSET', key, field, string.format('%d', n))
  return n
end

-- Count a task that ended in the stats hash (key), unless that key was
-- replaced by something that is not a hash: a counter is not worth a failure.
local function tally(key, status)
  local t = redis.call('TYPE', key)['ok']
  if t == 'hash' or t == 'none' then bump(key, status) end
end
