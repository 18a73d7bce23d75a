-- Give back the slots of one take whose message was not sent.
-- KEYS as in ratelimit_take.lua (1..4); ARGV take_id, weight, next_set_ms, previous_next_ms
local take_id = ARGV[1]
local w = tonumber(ARGV[2])
for i = 1, w do
  redis.call('ZREM', KEYS[1], take_id .. ':' .. i)
  redis.call('ZREM', KEYS[2], take_id .. ':' .. i)
end
redis.call('ZREM', KEYS[4], take_id)
-- Restore the chip's next proactive time unless a later send has moved it since.
if redis.call('GET', KEYS[3]) == ARGV[3] then
  if tonumber(ARGV[4]) > 0 then
    redis.call('SET', KEYS[3], ARGV[4], 'KEEPTTL')
  else
    redis.call('DEL', KEYS[3])
  end
end
return 1
