-- The supervisor takes the cluster's lease (client/lease.py).
-- KEYS: owner, epoch, owner_released. ARGV: ttl (ms), our value (JSON, without the epoch),
-- and the value of a dead holder to replace ('' for none).
-- Returns {1, epoch, released} taken with a new epoch, or {0, holder's value, ms left}.
-- released is 1 if the previous epoch's supervisor released the lease on a clean
-- stop (or there was none), 0 if it may still be alive with its processes (stalled).
local held = redis.call('GET', KEYS[1])
-- ARGV[3], if given, is the exact value of a holder known to be dead (its process is gone):
-- that one is taken over at once instead of waiting for its TTL.
if held and held ~= ARGV[3] then return {0, held, redis.call('PTTL', KEYS[1])} end
-- Not INCR: an epoch key that someone overwrote with text must not make
-- every start fail; it counts as 0, like an absent one.
local previous = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local released = 0
if previous == 0 or tonumber(redis.call('GET', KEYS[3]) or '') == previous then released = 1 end
local epoch = previous + 1
redis.call('SET', KEYS[2], epoch)
local value = cjson.decode(ARGV[2])
value['epoch'] = epoch
redis.call('SET', KEYS[1], cjson.encode(value), 'PX', ARGV[1])
return {1, epoch, released}
