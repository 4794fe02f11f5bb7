-- Assign a task, bumping its attempt (the fencing token) so older copies are
-- skipped. Mode 'new' (a message read from TASKS) is idempotent: a task that
-- already has a placement keeps it, so a redelivered or duplicate message does
-- not run it twice, and the placement's payload is the stored one, never the
-- duplicate's. Mode 'move' (its worker died, pid ARGV[9]) counts the death if
-- that process was running it, and leaves it alone if a newer process of the
-- same worker already runs it. Mode 'retry' takes a task that raised off the
-- retry schedule (KEYS[6], KEYS[7]). A move, whatever its outcome, clears the
-- task's mark in the orphans hash (KEYS[5]).
-- KEYS: record, stats, done channel, assignments, orphans, retries,
--       retry payloads, epoch, recent, history.
-- A placement is noted in the task's history: 'assigned' (new, retry) or
-- 'moved' (from the dead worker to the new one); a death it counts, 'died'.
-- A task's first placement counts it as submitted ('submitted|name' in stats)
-- and adds it to the index of recent tasks.
-- ARGV: id, worker, payload, at, retry limit, ttl, name, mode, dead pid, epoch.
-- Answers: {'assigned', attempt}; {'placed', attempt, worker, payload} already
-- placed or running (send nothing); {'ended'}; {'failed_now'}; {'not_now'} a
-- 'retry' taken already, or a 'new' or 'move' of a task that waits on the
-- retry schedule; {'stale_epoch'}; {'not_ours', key type}.
local id, worker, payload, at, limit, ttl, name, mode, dead_pid =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if stale(KEYS[8], ARGV[10]) then return {'stale_epoch'} end
if mode == 'move' then redis.call('HDEL', KEYS[5], id) end
if mode == 'retry' then
  redis.call('HDEL', KEYS[7], id)
  if redis.call('ZREM', KEYS[6], id) == 0 then return {'not_now'} end
end
local own = owner(KEYS[1])
if own ~= 'ours' and own ~= 'none' then
  redis.call('HDEL', KEYS[4], id)
  return {'not_ours', own}
end
if mode ~= 'retry' and redis.call('ZSCORE', KEYS[6], id) then
  -- It waits for its retry (its table entry is gone): a duplicate message or
  -- a move must not place it before then; the schedule will.
  return {'not_now'}
end
local st = redis.call('HGET', KEYS[1], 'status')
if is_terminal(st) then
  redis.call('HDEL', KEYS[4], id)
  -- cancelled before it was ever placed: keep what an operator's retry would run (reopen.lua)
  if st == 'cancelled' then redis.call('HSETNX', KEYS[1], 'payload', payload) end
  return {'ended'}
end
-- The stored placement 'worker|attempt|payload', if one is there and readable.
local entry = redis.call('HGET', KEYS[4], id)
local pw, pa, pp = false, false, false
if entry then
  pw, pa, pp = string.match(entry, '^([^|]*)|(%d+)|(.*)$')
end
if mode == 'new' then
  if pa then return {'placed', pa, pw, pp} end
elseif st == 'processing' then
  if mode == 'retry' or (dead_pid ~= '0' and redis.call('HGET', KEYS[1], 'pid') ~= dead_pid) then
    return {'placed', redis.call('HGET', KEYS[1], 'attempt'), redis.call('HGET', KEYS[1], 'worker'), pp or false}
  end
  if died(limit, at, ttl, KEYS[10]) then
    redis.call('HDEL', KEYS[4], id)
    return {'failed_now'}
  end
end
local from = redis.call('HGET', KEYS[1], 'worker')
local a = bump(KEYS[1], 'attempt')
-- The payload is kept in the record too: what an operator's retry runs once it has ended (reopen.lua).
redis.call('HSET', KEYS[1], 'yadtq', FORMAT, 'status', 'queued', 'worker', worker, 'task', name, 'payload', payload)
redis.call('HDEL', KEYS[1], 'retry_at')
redis.call('HSETNX', KEYS[1], 'submitted_at', at)
redis.call('HSET', KEYS[4], id, worker .. '|' .. string.format('%d', a) .. '|' .. payload)
if a == 1 and mode == 'new' then
  count_for(KEYS[2], 'submitted', name)
  -- pcall: an index overwritten with another type by hand is not worth a failure.
  -- The supervisor trims it to the newest RECENT_MAX every second (TaskStore.trim_recent).
  redis.pcall('ZADD', KEYS[9], at, id)
end
if mode == 'move' then
  note(KEYS[10], at, 'moved', {from = from or nil, to = worker})
else
  note(KEYS[10], at, 'assigned', {worker = worker, mode = mode})
end
return {'assigned', a}
