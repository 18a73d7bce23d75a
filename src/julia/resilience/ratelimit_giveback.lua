-- Give back the slots of one take whose message was not sent.
-- KEYS as in ratelimit_take.lua (1..4); ARGV take_id, weight
local take_id = ARGV[1]
local w = tonumber(ARGV[2])
for i = 1, w do
  redis.call('ZREM', KEYS[1], take_id .. ':' .. i)
  redis.call('ZREM', KEYS[2], take_id .. ':' .. i)
end
redis.call('ZREM', KEYS[3], take_id)
redis.call('ZREM', KEYS[4], take_id)
return 1
