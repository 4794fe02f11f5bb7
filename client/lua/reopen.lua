-- An operator's explicit retry of a task that ended 'failed' or 'cancelled': a
-- new run. Final is final for the cluster (no redelivery, duplicate, move or
-- late attempt reopens an ended record: ASSIGN, CLAIM, FINISH and RETRY all
-- refuse one); only this script, run on an operator's request, does. The
-- record goes back to 'queued', keeping what ended it as 'previous_status' and
-- 'previous_error', with a fresh retry budget (its attempt keeps counting: it
-- is the fencing token), and it no longer expires. The task goes on the retry
-- schedule, due now, with the payload ASSIGN stored in the record: the
-- scheduler takes it from there as any retry (ASSIGN mode 'retry'), in the
-- same atomic step, so no crash can leave it 'queued' with no message to run.
-- KEYS: record, stats, retries, retry payloads, history.
-- Noted in the task's history (who, and what it had ended as); the history stops expiring with the record.
-- ARGV: id, at, by.
-- Answers: {'reopened'}; {'refused', status} not failed or cancelled;
-- {'no_payload'} never assigned (e.g. an invalid message): nothing to run;
-- {'unknown'} no record; {'not_ours', type}.
local id, at, by = ARGV[1], ARGV[2], ARGV[3]
local own = owner(KEYS[1])
if own == 'none' then return {'unknown'} end
if own ~= 'ours' then return {'not_ours', own} end
local st = redis.call('HGET', KEYS[1], 'status') or ''
if st ~= 'failed' and st ~= 'cancelled' then return {'refused', st} end
local payload = redis.call('HGET', KEYS[1], 'payload')
if not payload then return {'no_payload'} end
local why = redis.call('HGET', KEYS[1], 'error')
if st == 'cancelled' then
  why = 'cancelled by ' .. (redis.call('HGET', KEYS[1], 'cancelled_by') or '?')
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'previous_status', st, 'previous_error', why or '',
  'reopened_by', by, 'reopened_at', at, 'retry_at', at)
redis.call('HDEL', KEYS[1], 'error', 'traceback', 'result', 'finished_at', 'failed_at', 'cancelled_by',
  'cancelled_at', 'retries', 'worker_deaths', 'pid', 'started_at')
bump(KEYS[1], 'reopened')
redis.call('PERSIST', KEYS[1])
note(KEYS[5], at, 'reopened', {by = by, was = st}, -1)
redis.call('ZADD', KEYS[3], at, id)
redis.call('HSET', KEYS[4], id, payload)
tally(KEYS[2], 'reopened')
return {'reopened'}
