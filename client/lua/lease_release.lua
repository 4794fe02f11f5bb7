-- The holder gives its lease up on a clean stop (client/lease.py).
-- KEYS: owner. ARGV: token. Deletes the lease only if it is ours: returns 1, else 0.
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local ok, value = pcall(cjson.decode, held)
if ok and type(value) == 'table' and value['token'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
