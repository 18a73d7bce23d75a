-- Check-and-take one outbound message, atomically: sliding-window logs in sorted sets.
-- Each slot is one member (a campaign message of weight 2 adds two), scored by its time.
--
-- KEYS[1] doctor's proactive log   KEYS[2] chip's proactive log (24 h)
-- KEYS[3] chip's next proactive times, one per take (the latest rules)
-- KEYS[4] chip's burst log (every message)
-- KEYS[5] doctor's override flag (exists while an operator override is active)
-- KEYS[6] state marker: its absence means Redis lost its data (FLUSHALL, a restart
--         without persistence), so the logs may be short and nothing can be decided
-- ARGV    now_ms, take_id, weight, proactive(1|0), medico_limit, day_ms,
--         chip_hourly, hour_ms, chip_daily, burst_limit, burst_ms, gap_ms
-- Returns {1} when taken, {-1} when the state marker is missing (refill first),
--         {0, limit, retry_at_ms} when denied (retry_at_ms = -2: it can never fit).
if redis.call('EXISTS', KEYS[6]) == 0 then return {-1} end
local now = tonumber(ARGV[1])
local take_id = ARGV[2]
local w = tonumber(ARGV[3])
local proactive = ARGV[4] == '1'
local medico_limit = tonumber(ARGV[5])
local day = tonumber(ARGV[6])
local chip_hourly = tonumber(ARGV[7])
local hour = tonumber(ARGV[8])
local chip_daily = tonumber(ARGV[9])
local burst_limit = tonumber(ARGV[10])
local burst_ms = tonumber(ARGV[11])
local gap_ms = tonumber(ARGV[12])

-- When `w` more slots fit in `key`'s window of `window` ms under `limit`:
-- -1 now, -2 never, otherwise the time the oldest slots in the way leave the window.
local function free_at(key, window, limit, weight)
  if weight > limit then return -2 end
  local lo = '(' .. (now - window)
  local c = redis.call('ZCOUNT', key, lo, '+inf')
  if c + weight <= limit then return -1 end
  local e = redis.call('ZRANGEBYSCORE', key, lo, '+inf', 'WITHSCORES', 'LIMIT', c + weight - limit - 1, 1)
  return tonumber(e[2]) + window
end

local worst, worst_at = nil, -1
local function check(name, at)
  if at == -1 then return end
  if worst == nil or (worst_at ~= -2 and (at == -2 or at > worst_at)) then
    worst, worst_at = name, at
  end
end

redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - burst_ms)
if proactive then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - day)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - day)
  if redis.call('EXISTS', KEYS[5]) == 0 then
    check('medico_daily', free_at(KEYS[1], day, medico_limit, w))
  end
  check('chip_daily', free_at(KEYS[2], day, chip_daily, w))
  check('chip_hourly', free_at(KEYS[2], hour, chip_hourly, w))
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  local g = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  if g[2] ~= nil then check('chip_interval', tonumber(g[2])) end
end
check('chip_burst', free_at(KEYS[4], burst_ms, burst_limit, 1))
if worst ~= nil then return {0, worst, worst_at} end

redis.call('ZADD', KEYS[4], now, take_id)
redis.call('PEXPIRE', KEYS[4], burst_ms)
if proactive then
  for i = 1, w do
    redis.call('ZADD', KEYS[1], now, take_id .. ':' .. i)
    redis.call('ZADD', KEYS[2], now, take_id .. ':' .. i)
  end
  redis.call('PEXPIRE', KEYS[1], day)
  redis.call('PEXPIRE', KEYS[2], day)
  redis.call('ZADD', KEYS[3], now + gap_ms, take_id)
  redis.call('PEXPIRE', KEYS[3], day)
end
return {1}
