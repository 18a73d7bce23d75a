-- Check-and-take a batch of outbound messages atomically, each on the first of its
-- candidate chips (in preference order) whose limits let it through: the checks and
-- takes of ratelimit_take.lua, message after message. A message's candidates are ranked
-- by (k1, k2, uses of the chip, k3, k4), ascending; a chip's uses grow with each take of
-- this batch (a chip chosen earlier counts as used by the later messages).
--
-- KEYS[1] state marker (absent: Redis lost its data, nothing is decided)
-- KEYS[2 + 3(j-1)..] per chip j: proactive log, next proactive times, burst log
-- then per message i: doctor's proactive log, doctor's override flag
-- ARGV    now_ms, day_ms, hour_ms, burst_limit, burst_ms, medico_limit, n_chips, n_msgs,
--         per chip: uses, chip_hourly, chip_daily;
--         per message: take_id, weight, proactive(1|0), gap_ms, n_cands,
--                      per candidate: chip index, k1, k2, k3, k4
-- Returns {-1} when the state marker is missing; else per message: n, then n attempts
--         of (chip index, 1) taken or (chip index, 0, limit, retry_at_ms) denied.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local a = 1
local function nxt() local v = ARGV[a]; a = a + 1; return v end
local now = tonumber(nxt()); local day = tonumber(nxt()); local hour = tonumber(nxt())
local burst_limit = tonumber(nxt()); local burst_ms = tonumber(nxt())
local medico_limit = tonumber(nxt())
local n_chips = tonumber(nxt()); local n_msgs = tonumber(nxt())
local uses, hourly, daily = {}, {}, {}
for j = 1, n_chips do
  uses[j] = tonumber(nxt()); hourly[j] = tonumber(nxt()); daily[j] = tonumber(nxt())
end

local function free_at(key, window, limit, weight)
  if weight > limit then return -2 end
  local lo = '(' .. (now - window)
  local c = redis.call('ZCOUNT', key, lo, '+inf')
  if c + weight <= limit then return -1 end
  local e = redis.call('ZRANGEBYSCORE', key, lo, '+inf', 'WITHSCORES', 'LIMIT', c + weight - limit - 1, 1)
  return tonumber(e[2]) + window
end

local out = {}
for i = 1, n_msgs do
  local take_id = nxt(); local w = tonumber(nxt()); local proactive = nxt() == '1'
  local gap_ms = tonumber(nxt()); local n = tonumber(nxt())
  local medico_k = KEYS[2 + 3 * n_chips + 2 * (i - 1)]
  local override_k = KEYS[3 + 3 * n_chips + 2 * (i - 1)]
  local cands = {}
  for c = 1, n do
    cands[c] = {tonumber(nxt()), tonumber(nxt()), tonumber(nxt()), tonumber(nxt()), tonumber(nxt())}
  end
  local tried = {}
  local attempts = {}
  local left = n
  while left > 0 do
    local best, bk = nil, nil
    for c = 1, n do
      if not tried[c] then
        local x = cands[c]
        local k = {x[2], x[3], uses[x[1]], x[4], x[5]}
        local less = bk == nil
        if not less then
          for p = 1, 5 do
            if k[p] ~= bk[p] then less = k[p] < bk[p]; break end
          end
        end
        if less then best, bk = c, k end
      end
    end
    tried[best] = true
    left = left - 1
    local j = cands[best][1]
    local chip_k = KEYS[2 + 3 * (j - 1)]
    local next_k = KEYS[3 + 3 * (j - 1)]
    local burst_k = KEYS[4 + 3 * (j - 1)]
    local worst, worst_at = nil, -1
    local function check(name, at)
      if at == -1 then return end
      if worst == nil or (worst_at ~= -2 and (at == -2 or at > worst_at)) then
        worst, worst_at = name, at
      end
    end
    redis.call('ZREMRANGEBYSCORE', burst_k, '-inf', now - burst_ms)
    if proactive then
      redis.call('ZREMRANGEBYSCORE', medico_k, '-inf', now - day)
      redis.call('ZREMRANGEBYSCORE', chip_k, '-inf', now - day)
      if redis.call('EXISTS', override_k) == 0 then
        check('medico_daily', free_at(medico_k, day, medico_limit, w))
      end
      check('chip_daily', free_at(chip_k, day, daily[j], w))
      check('chip_hourly', free_at(chip_k, hour, hourly[j], w))
      redis.call('ZREMRANGEBYSCORE', next_k, '-inf', now)
      local g = redis.call('ZRANGE', next_k, -1, -1, 'WITHSCORES')
      if g[2] ~= nil then check('chip_interval', tonumber(g[2])) end
    end
    check('chip_burst', free_at(burst_k, burst_ms, burst_limit, 1))
    if worst == nil then
      redis.call('ZADD', burst_k, now, take_id)
      redis.call('PEXPIRE', burst_k, burst_ms)
      if proactive then
        for s = 1, w do
          redis.call('ZADD', medico_k, now, take_id .. ':' .. s)
          redis.call('ZADD', chip_k, now, take_id .. ':' .. s)
        end
        redis.call('PEXPIRE', medico_k, day)
        redis.call('PEXPIRE', chip_k, day)
        redis.call('ZADD', next_k, now + gap_ms, take_id)
        redis.call('PEXPIRE', next_k, day)
      end
      uses[j] = uses[j] + 1
      table.insert(attempts, {j, 1})
      break
    end
    table.insert(attempts, {j, 0, worst, worst_at})
    if worst == 'medico_daily' then break end  -- the same whichever chip sends
  end
  table.insert(out, #attempts)
  for _, t in ipairs(attempts) do
    for _, v in ipairs(t) do table.insert(out, v) end
  end
end
return out
