-- Who owns each key a task id names (see owner() in common.lua), before a
-- client produces those tasks. KEYS: the records. Touches nothing.
-- Answers: {owner of KEYS[1], owner of KEYS[2], ...}: 'ours', 'none' or a type.
local out = {}
for i, key in ipairs(KEYS) do out[i] = owner(key) end
return out
