-- The holder gives its lease up on a clean stop (client/lease.py).
-- KEYS: owner, owner_released. ARGV: token, our epoch.
-- Deletes the lease only if it is ours, and records that our epoch released it
-- (the next owner then need not wait for our processes): returns 1, else 0.
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local ok, value = pcall(cjson.decode, held)
if ok and type(value) == 'table' and value['token'] == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  return redis.call('DEL', KEYS[1])
end
return 0
