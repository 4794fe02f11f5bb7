-- Write a terminal record.
-- KEYS: record, stats, done channel, epoch, timings, history.
-- The end is noted in the task's history (status, and the error's first line).
-- The run time of the attempt that finished (started to finished) goes to timings.
-- ARGV: attempt, status, at, ttl, epoch, then field, value, ...
-- Answers: {'written'}; {'ended'} already terminal; {'fenced'};
-- {'stale_epoch'}; {'not_ours', type}.
if stale(KEYS[4], ARGV[5]) then return {'stale_epoch'} end
local own = owner(KEYS[1])
if own == 'none' then return {'fenced'} end
if own ~= 'ours' then return {'not_ours', own} end
local st = redis.call('HGET', KEYS[1], 'status')
if is_terminal(st) then return {'ended'} end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return {'fenced'} end
local before = redis.call('HMGET', KEYS[1], 'started_at', 'task')
local started, name = tonumber(before[1]), before[2] or nil
local err = nil  -- the 'error' field among the fields written, if any
for i, v in ipairs(ARGV) do
  if i >= 6 and i % 2 == 0 and v == 'error' then err = first_line(ARGV[i + 1]) end
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', ARGV[3], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[4])
note(KEYS[6], ARGV[3], 'ended', {status = ARGV[2], error = err}, ARGV[4])
tally(KEYS[2], ARGV[2], name)
if started then observe(KEYS[5], 'run', name, tonumber(ARGV[3]) - started) end
redis.call('PUBLISH', KEYS[3], ARGV[2])
return {'written'}
