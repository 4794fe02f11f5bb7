-- The scheduler's plain writes to its tables (client/store.py: drop_placements,
-- mark_orphans, drop_retry, write_load), fenced as every lifecycle script is:
-- a scheduler that another one replaced writes nothing here either.
-- KEYS: epoch, then what the op writes. ARGV: epoch, op, then the op's arguments:
--   'hdel'    KEYS[2] a hash; ARGV[3..] the fields to delete
--   'hset'    KEYS[2] a hash; ARGV[3..] field, value, field, value, ...
--   'unretry' KEYS[2] the retry schedule, KEYS[3] its payloads; ARGV[3] the task id
--   'count'   KEYS[2] a counter hash; ARGV[3] a field, ARGV[4] n to add to it (totally: add())
-- Returns 'ok', or 'stale_epoch' with nothing written.
if stale(KEYS[1], ARGV[1]) then return 'stale_epoch' end
local op = ARGV[2]
if op == 'hdel' then
  redis.call('HDEL', KEYS[2], unpack(ARGV, 3))
elseif op == 'hset' then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3))
elseif op == 'count' then
  add(KEYS[2], ARGV[3], tonumber(ARGV[4]))
else
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('HDEL', KEYS[3], ARGV[3])
end
return 'ok'
