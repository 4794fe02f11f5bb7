-- A worker claims (task, attempt) to run it. Finding it already 'processing'
-- under the same attempt means the process that claimed it died.
-- KEYS: record, stats, done channel, epoch, timings, history.
-- A run (and a death it finds) is noted in the task's history.
-- The first start of a task records its queue wait (submitted to started) in timings.
-- ARGV: attempt, worker, at, pid, retry limit, ttl, epoch.
-- Answers: {'run'}; {'ended'}; {'fenced'} reassigned, or no record;
-- {'failed_now'} it just failed for good; {'stale_epoch'}; {'not_ours', type}.
if stale(KEYS[4], ARGV[7]) then return {'stale_epoch'} end
local own = owner(KEYS[1])
if own == 'none' then return {'fenced'} end
if own ~= 'ours' then return {'not_ours', own} end
local st = redis.call('HGET', KEYS[1], 'status')
if is_terminal(st) then return {'ended'} end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return {'fenced'} end
if st == 'processing' and died(ARGV[5], ARGV[3], ARGV[6], KEYS[6]) then return {'failed_now'} end
redis.call('HSET', KEYS[1], 'status', 'processing', 'worker', ARGV[2], 'started_at', ARGV[3], 'pid', ARGV[4])
if redis.call('HSETNX', KEYS[1], 'first_started_at', ARGV[3]) == 1 then
  local rec = redis.call('HMGET', KEYS[1], 'submitted_at', 'task')
  local submitted = tonumber(rec[1])
  if submitted then observe(KEYS[5], 'wait', rec[2] or nil, tonumber(ARGV[3]) - submitted) end
end
note(KEYS[6], ARGV[3], 'started', {worker = ARGV[2], pid = tonumber(ARGV[4]) or ARGV[4]})
return {'run'}
