-- An operator cancels a task (DESIGN §3: only an operator sets 'cancelled').
-- A record that has not ended becomes 'cancelled', with who and when: counted
-- in the stats, expiring as any ended record, its waiters told. It never
-- starts afterwards, wherever its message still is: ASSIGN and CLAIM refuse an
-- ended record (TASKS, a worker's topic, a move), and a retry that waits leaves
-- the schedule here. A running attempt is stopped by its own worker, which
-- watches its record (worker_pool/worker.py). An id with no record yet (a
-- producer that wrote none, its message still in TASKS) gets a cancelled one,
-- so it never starts either. Mode 'unstarted' (purge) cancels only a task
-- that has not started: its record says 'queued', or there is none. No epoch: an operator belongs to no generation of the
-- cluster (as QUEUED, a client's script); only these two scripts of an
-- operator's write a terminal record, and no generation can overwrite it.
-- KEYS: record, stats, done channel, retries, retry payloads, history.
-- Noted in the task's history: who cancelled it, and its status before.
-- ARGV: id, at, ttl, by, mode ('any' or 'unstarted').
-- Answers: {'cancelled', status before ('' none)}; {'ended', status} left
-- alone; {'started', status} (mode 'unstarted') left alone; {'not_ours', type}.
local id, at, ttl, by, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local own = owner(KEYS[1])
if own ~= 'ours' and own ~= 'none' then return {'not_ours', own} end
local st = redis.call('HGET', KEYS[1], 'status') or ''
if is_terminal(st) then return {'ended', st} end
if mode == 'unstarted' and st ~= 'queued' and st ~= '' then return {'started', st} end
redis.call('HSET', KEYS[1], 'yadtq', FORMAT, 'status', 'cancelled', 'cancelled_by', by, 'cancelled_at', at,
  'finished_at', at)
redis.call('HDEL', KEYS[1], 'retry_at')
redis.call('ZREM', KEYS[4], id)
redis.call('HDEL', KEYS[5], id)
redis.call('EXPIRE', KEYS[1], ttl)
note(KEYS[6], at, 'cancelled', {by = by, was = st}, ttl)
tally(KEYS[2], 'cancelled')
stamp(KEYS[1], '', at)
redis.call('PUBLISH', KEYS[3], 'cancelled')
return {'cancelled', st}
