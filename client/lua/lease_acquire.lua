-- The supervisor takes the cluster's lease (client/lease.py).
-- KEYS: owner, epoch. ARGV: ttl (ms), our value (JSON, without the epoch).
-- Returns {1, epoch} taken with a new epoch, or {0, holder's value, ms left}.
local held = redis.call('GET', KEYS[1])
if held then return {0, held, redis.call('PTTL', KEYS[1])} end
-- Not INCR: an epoch key that someone overwrote with text must not make
-- every start fail; it counts as 0, like an absent one.
local epoch = (tonumber(redis.call('GET', KEYS[2]) or '0') or 0) + 1
redis.call('SET', KEYS[2], epoch)
local value = cjson.decode(ARGV[2])
value['epoch'] = epoch
redis.call('SET', KEYS[1], cjson.encode(value), 'PX', ARGV[1])
return {1, epoch}
