-- Fail a task whose payload cannot be read, so it is never sent and never hangs.
-- Mode 'assignments' (the scheduler's table entry, ARGV[7] as read) and mode
-- 'retries' (its retry payload, ARGV[7] as read, absent if ARGV[8] is '0'):
-- unless the entry changed since it was read (then {'changed'}, left alone),
-- the entry goes (with its orphan mark, or off the retry schedule), and the
-- record is failed unless it ended or is not YADTQ's. Mode 'worker' (worker
-- ARGV[7] read an assignment of this id that it cannot parse): failed only if
-- the record is ours, not ended, and placed on that worker; its table entry goes.
-- KEYS: record, stats, done channel, assignments, orphans, retries, retry payloads, epoch, history.
-- A task failed here is noted in its history (the reason's first line).
-- ARGV: id, at, ttl, error, epoch, mode, text or worker, present ('1' or '0') or attempt.
-- Answers: {'failed', attempt}; {'ended'}; {'changed'}; {'elsewhere'};
-- {'stale_epoch'}; {'not_ours', type}.
local id, mode = ARGV[1], ARGV[6]
if stale(KEYS[8], ARGV[5]) then return {'stale_epoch'} end
local own = owner(KEYS[1])
if mode == 'worker' then
  if own ~= 'ours' then return {'elsewhere'} end
  if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[7] or redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[8] then
    return {'elsewhere'}
  end
else
  local stored
  if mode == 'assignments' then stored = redis.call('HGET', KEYS[4], id)
  else stored = redis.call('HGET', KEYS[7], id) end
  if (ARGV[8] == '1' and stored ~= ARGV[7]) or (ARGV[8] ~= '1' and stored) then return {'changed'} end
  if mode == 'assignments' then
    redis.call('HDEL', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
  else
    redis.call('ZREM', KEYS[6], id)
    redis.call('HDEL', KEYS[7], id)
  end
  if own ~= 'ours' and own ~= 'none' then return {'not_ours', own} end
end
local st = redis.call('HGET', KEYS[1], 'status')
if is_terminal(st) then return {'ended'} end
redis.call('HDEL', KEYS[4], id)
redis.call('HSET', KEYS[1], 'yadtq', FORMAT, 'status', 'failed', 'finished_at', ARGV[2], 'error', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
note(KEYS[9], ARGV[2], 'unreadable', {error = first_line(ARGV[4]), where = mode}, ARGV[3])
tally(KEYS[2], 'failed')
stamp(KEYS[1], '', ARGV[2])
redis.call('PUBLISH', KEYS[3], 'failed')
return {'failed', redis.call('HGET', KEYS[1], 'attempt') or '0'}
