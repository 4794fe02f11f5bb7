-- The supervisor takes the cluster's lease (client/lease.py).
-- KEYS: owner, epoch. ARGV: ttl (ms), our value (JSON, without the epoch).
-- Returns {1, epoch} taken with a new epoch, or {0, holder's value, ms left}.
local held = redis.call('GET', KEYS[1])
if held then return {0, held, redis.call('PTTL', KEYS[1])} end
local epoch = redis.call('INCR', KEYS[2])
local value = cjson.decode(ARGV[2])
value['epoch'] = epoch
redis.call('SET', KEYS[1], cjson.encode(value), 'PX', ARGV[1])
return {1, epoch}
