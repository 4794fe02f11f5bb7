-- A client submitted the task: its record says 'queued', unless the scheduler
-- (or an earlier submit of the same id) wrote it first. One command per task
-- instead of three HSETNX: the client's share of the work is mostly packing.
-- KEYS: record. ARGV: name, at.
-- Answers: {'created'}; {'kept'} a record was there; {'not_ours', type}.
local own = owner(KEYS[1])
if own ~= 'ours' and own ~= 'none' then return {'not_ours', own} end
if redis.call('HSETNX', KEYS[1], 'status', 'queued') == 1 then
  redis.call('HSET', KEYS[1], 'yadtq', FORMAT, 'task', ARGV[1], 'submitted_at', ARGV[2])
  return {'created'}
end
-- A record that ended before it was ever placed and before any client wrote it
-- (refused, or cancelled, before this write) holds a stand-in name and time
-- (stamp() in common.lua, which dates it when it ended): the client's are
-- the true ones.
local rec = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'submitted_at', 'finished_at')
if is_terminal(rec[1]) and not rec[2] and rec[3] == rec[4] then
  redis.call('HSET', KEYS[1], 'task', ARGV[1], 'submitted_at', ARGV[2])
  return {'kept'}
end
-- fill in what the scheduler's write left out, never replacing a field
redis.call('HSETNX', KEYS[1], 'task', ARGV[1])
redis.call('HSETNX', KEYS[1], 'submitted_at', ARGV[2])
return {'kept'}
