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
local function stale(epoch_key, mine)
  local current = tonumber(redis.call('GET', epoch_key) or '0') or 0
  return (tonumber(mine) or 0) < current
end
