-- A worker stopping gracefully hands back the task it could not finish in the
-- grace period: 'queued' again, so its next run is not counted as a death.
-- KEYS: record, epoch, history. ARGV: attempt, pid, epoch, at.
-- Noted in the task's history: the attempt ended 'released', to run again.
-- Answers: {'released'}; {'not_held'} not this process's claim any more;
-- {'stale_epoch'}; {'not_ours', type}.
if stale(KEYS[2], ARGV[3]) then return {'stale_epoch'} end
local own = owner(KEYS[1])
if own == 'none' then return {'not_held'} end
if own ~= 'ours' then return {'not_ours', own} end
if redis.call('HGET', KEYS[1], 'status') ~= 'processing' then return {'not_held'} end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return {'not_held'} end
if redis.call('HGET', KEYS[1], 'pid') ~= ARGV[2] then return {'not_held'} end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('HDEL', KEYS[1], 'pid', 'started_at')
note(KEYS[3], ARGV[4], 'released', {pid = tonumber(ARGV[2]) or ARGV[2]})
return {'released'}
