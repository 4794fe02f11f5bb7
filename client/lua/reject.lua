-- Fail a task the scheduler refused (an invalid message), unless that id was
-- ever accepted: a bad duplicate must not touch a task that has an attempt,
-- waits on the retry schedule, is placed, or has ended. Only a record that was
-- never accepted (none, or only the client's 'queued' write) is failed.
-- KEYS: record, stats, done channel, assignments, retries, epoch.
-- ARGV: id, at, ttl, error, epoch.
-- Answers: {'failed'}; {'ended'}; {'accepted'} left alone; {'stale_epoch'};
-- {'not_ours', type}.
if stale(KEYS[6], ARGV[5]) then return {'stale_epoch'} end
local own = owner(KEYS[1])
if own ~= 'ours' and own ~= 'none' then return {'not_ours', own} end
local st = redis.call('HGET', KEYS[1], 'status')
if is_terminal(st) then return {'ended'} end
if (st and st ~= 'queued') or redis.call('HEXISTS', KEYS[1], 'attempt') == 1
    or redis.call('ZSCORE', KEYS[5], ARGV[1]) or redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then
  return {'accepted'}
end
redis.call('HSET', KEYS[1], 'yadtq', FORMAT, 'status', 'failed', 'finished_at', ARGV[2], 'error', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], 'failed', 1)
redis.call('PUBLISH', KEYS[3], 'failed')
return {'failed'}
