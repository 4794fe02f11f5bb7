-- The holder extends its lease (client/lease.py).
-- KEYS: owner, epoch. ARGV: token, ttl (ms), our value, our epoch.
-- Returns 1 renewed, 2 taken again after it lapsed (no one else took it since:
-- the epoch is still ours, or gone with Redis's data), -1 someone else holds it.
-- A value that is not our JSON (written by hand, or by anyone else) is not ours.
local function token(text)
  local ok, value = pcall(cjson.decode, text)
  if ok and type(value) == 'table' then return value['token'] end
  return nil
end
local held = redis.call('GET', KEYS[1])
if held then
  if token(held) ~= ARGV[1] then return -1 end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
local epoch = redis.call('GET', KEYS[2])
if epoch and epoch ~= ARGV[4] then return -1 end
redis.call('SET', KEYS[2], ARGV[4])
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
return 2
