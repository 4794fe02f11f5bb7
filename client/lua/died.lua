-- Shared by ASSIGN and CLAIM, whose KEYS[1..3] are (record, stats, done channel):
-- the last claim of this task never finished, so its worker died mid-task.
-- Count it; past the retry limit (deaths and raises together) the task fails
-- for good (returns true). Both are noted in the task's history (key ``hist``).
local function died(limit, at, ttl, hist)
  local n = bump(KEYS[1], 'worker_deaths')
  local was = redis.call('HMGET', KEYS[1], 'worker', 'pid')
  note(hist, at, 'died', {worker = was[1] or nil, pid = tonumber(was[2]) or was[2] or nil, deaths = n})
  count_for(KEYS[2], 'lost', redis.call('HGET', KEYS[1], 'task'))
  local raised = count(KEYS[1], 'retries')
  if n + raised <= (tonumber(limit) or 0) then return false end
  local also = ''
  if raised > 0 then also = ' (and it raised ' .. raised .. ' time(s))' end
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', at, 'error',
    'WorkerLost: the worker died while running this task ' .. n ..
    ' time(s)' .. also .. '; the retry limit is ' .. limit)
  redis.call('EXPIRE', KEYS[1], ttl)
  note(hist, at, 'ended', {status = 'failed', error = 'WorkerLost'}, ttl)
  tally(KEYS[2], 'failed')
  redis.call('PUBLISH', KEYS[3], 'failed')
  return true
end
