-- Fail a task the scheduler refused. Mode 'new' (an invalid message from
-- TASKS): unless that id was ever accepted, as a bad duplicate must not touch
-- a task that has an attempt, waits on the retry schedule, is placed, or has
-- ended; only a record that was never accepted (none, or only the client's
-- 'queued' write) is failed. Mode 'retry' (the scheduler took the task off the
-- retry schedule, and its payload cannot run, e.g. its task is no longer
-- registered): failed unless it ended or is placed. Mode 'move' (the task of
-- a dead worker, taken from the scheduler's table, cannot run): failed unless
-- it ended, and its placement and orphan mark go (it would hang otherwise).
-- KEYS: record, stats, done channel, assignments, retries, epoch, orphans, history.
-- A task failed here is noted in its history (the reason's first line).
-- ARGV: id, at, ttl, error, epoch, mode, the task name the message gave ('' none).
-- Answers: {'failed'}; {'ended'}; {'accepted'} left alone; {'stale_epoch'};
-- {'not_ours', type}.
if stale(KEYS[6], ARGV[5]) then return {'stale_epoch'} end
local own = owner(KEYS[1])
if own ~= 'ours' and own ~= 'none' then return {'not_ours', own} end
local st = redis.call('HGET', KEYS[1], 'status')
if is_terminal(st) then return {'ended'} end
if ARGV[6] == 'move' then
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('HDEL', KEYS[7], ARGV[1])
elseif redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then
  return {'accepted'}
elseif ARGV[6] == 'new' and ((st and st ~= 'queued') or redis.call('HEXISTS', KEYS[1], 'attempt') == 1
    or redis.call('ZSCORE', KEYS[5], ARGV[1])) then
  return {'accepted'}
end
redis.call('HSET', KEYS[1], 'yadtq', FORMAT, 'status', 'failed', 'finished_at', ARGV[2], 'error', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
note(KEYS[8], ARGV[2], 'rejected', {error = first_line(ARGV[4]), mode = ARGV[6]}, ARGV[3])
tally(KEYS[2], 'failed')
stamp(KEYS[1], ARGV[7], ARGV[2])
redis.call('PUBLISH', KEYS[3], 'failed')
return {'failed'}
