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

-- Add n to the count 'field' of a counter hash (the per-name fields of stats,
-- the timings) in one command, and totally: a field damaged into anything but
-- a number starts again from n, and a key replaced by something that is not a
-- hash is skipped (redis.pcall turns their errors into values): a counter is
-- not worth a failure. HINCRBYFLOAT when n is a float (a sum of seconds).
local function add(key, field, n, float)
  local done = redis.pcall(float and 'HINCRBYFLOAT' or 'HINCRBY', key, field, n)
  if type(done) == 'table' and done['err'] then redis.pcall('HSET', key, field, n) end
end

-- Count one event of a task or worker ``name`` in the stats hash, as the
-- field 'what|name' (client/insight.py reads them); nothing if name is unknown.
local function count_for(key, what, name)
  if name then add(key, what .. '|' .. name, 1) end
end

-- Every record has 'task' and 'submitted_at' (and 'status'), for any reader
-- (README: reading results from another language): a record made by a script
-- for a message that was never accepted gets the name it gave ('' if none)
-- and the time it was refused. Called after tally(): such a name is no
-- registered task, and must not become a counter of its own.
local function stamp(key, name, at)
  redis.call('HSETNX', key, 'task', name or '')
  redis.call('HSETNX', key, 'submitted_at', at)
end

-- Count a task that ended in the stats hash (key): the total per status (a
-- stats key of another type is skipped), and per task name as
-- 'finished|status|name'; ``name`` is read from the record KEYS[1] unless given.
local function tally(key, status, name)
  local t = redis.call('TYPE', key)['ok']
  if t == 'hash' or t == 'none' then bump(key, status) end
  count_for(key, 'finished|' .. status, name or redis.call('HGET', KEYS[1], 'task'))
end

-- Upper bounds (seconds) of the timing histograms' buckets; the last bucket
-- is everything above. client/insight.py holds the same list (TIMING_BUCKETS).
local BUCKETS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

-- Observe ``seconds`` for task ``name`` in the timings hash (key): one bucket
-- count 'what|i|name' (not cumulative) and the sum 'what_sum|name'. A
-- negative time (clocks of two hosts) counts as 0. Two commands.
local function observe(key, what, name, seconds)
  if not name or not seconds or seconds ~= seconds or seconds == math.huge then return end
  if seconds < 0 then seconds = 0 end
  local i = #BUCKETS + 1
  for j, bound in ipairs(BUCKETS) do
    if seconds <= bound then
      i = j
      break
    end
  end
  add(key, what .. '|' .. i .. '|' .. name, 1)
  add(key, what .. '_sum|' .. name, string.format('%.6f', seconds), true)
end

-- A task's history (client/store.py Keys.history): a list of small JSON
-- entries, one per event of its attempts, the newest HISTORY_MAX kept (a task
-- retried forever must not grow it without bound; client/store.py holds the
-- same number). ``entry`` gets 'at' (a number), 'event' and the record's
-- attempt. The list expires with the record: only an ended record expires,
-- so the script that ends one passes its ``ttl`` (seconds) here too, and
-- REOPEN, which makes it last again, passes -1 (PERSIST); any other note
-- leaves the list's TTL as it is (none, as its record's). Two commands on the
-- hot path (ASSIGN, CLAIM), not five: a PTTL of the record to copy costs more.
-- redis.pcall: a history key written with another type by hand is skipped,
-- not worth a failure of the task's write.
local HISTORY_MAX = 50

local function note(key, at, event, entry, ttl)
  entry['at'] = tonumber(at) or at
  entry['event'] = event
  entry['attempt'] = count(KEYS[1], 'attempt')
  local pushed = redis.pcall('RPUSH', key, cjson.encode(entry))
  if type(pushed) == 'table' and pushed['err'] then return end
  if pushed > HISTORY_MAX then redis.call('LTRIM', key, -HISTORY_MAX, -1) end
  if ttl == -1 then redis.call('PERSIST', key) elseif ttl then redis.call('EXPIRE', key, ttl) end
end

-- The first line of an error text, at most 200 characters: what a history entry keeps of it.
local function first_line(text)
  return string.sub(string.match(text, '^[^\n]*'), 1, 200)
end
