-- The active scheduler fences a node it is about to declare lost (client/store.py, fence_lost_node).
-- KEYS: the node's lease, the node's epoch. Returns 1 if the lease had lapsed, after
-- bumping the epoch (so whatever still runs of that generation, say a paused host that
-- resumes, can write nothing more and its supervisor finds its lease gone), 0 if a
-- supervisor of that node holds the lease (it handles its own workers).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
-- Not INCR: an epoch key that someone overwrote with text counts as 0 (lease_acquire.lua).
local previous = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
redis.call('SET', KEYS[2], previous + 1)
return 1
