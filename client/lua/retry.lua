-- A task raised and may run again: back to 'queued' with the error, off the
-- scheduler's table (KEYS[4]) and onto the retry schedule (KEYS[2], KEYS[3]),
-- due after an exponential backoff: ARGV[4] seconds doubled per earlier retry,
-- at most ARGV[9].
-- KEYS: record, retries, retry payloads, assignments, epoch, stats, history.
-- A scheduled retry is noted in the task's history: the error's first line, when it runs again.
-- ARGV: id, attempt, at, first backoff, retry limit, error, traceback,
--       payload, longest backoff, epoch.
-- Answers: {'scheduled', due}; {'exhausted', failures so far} no retry left
-- (the caller fails it); {'fenced'}; {'ended'}; {'stale_epoch'}; {'not_ours', type}.
if stale(KEYS[5], ARGV[10]) then return {'stale_epoch'} end
local own = owner(KEYS[1])
if own == 'none' then return {'fenced'} end
if own ~= 'ours' then return {'not_ours', own} end
local st = redis.call('HGET', KEYS[1], 'status')
if is_terminal(st) then return {'ended'} end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[2] then return {'fenced'} end
local used = count(KEYS[1], 'worker_deaths') + count(KEYS[1], 'retries')
if used >= tonumber(ARGV[5]) then return {'exhausted', used} end
local n = bump(KEYS[1], 'retries')
count_for(KEYS[6], 'retries', redis.call('HGET', KEYS[1], 'task'))
local due = tostring(tonumber(ARGV[3]) + math.min(tonumber(ARGV[9]), tonumber(ARGV[4]) * 2 ^ (n - 1)))
redis.call('HSET', KEYS[1], 'status', 'queued', 'retry_at', due, 'failed_at', ARGV[3],
  'error', ARGV[6], 'traceback', ARGV[7])
redis.call('HDEL', KEYS[1], 'pid', 'started_at')
redis.call('ZADD', KEYS[2], due, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[8])
redis.call('HDEL', KEYS[4], ARGV[1])
note(KEYS[7], ARGV[3], 'raised', {error = first_line(ARGV[6]), retry_at = tonumber(due), retries = n})
return {'scheduled', due}
