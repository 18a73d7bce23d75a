-- One circuit breaker, changed atomically. Mirrored line by line by
-- julia.resilience.breaker.step (the local fallback when Redis is down).
--
-- KEYS[1]  the breaker's hash
-- KEYS[2]  the channel every change is published on (its payload: KEYS[1]), so the
--          processes that trust a closed breaker without asking hear when it changed
-- ARGV     op, now_ms, threshold, rate, window_size, min_calls, base_ms, factor, max_ms,
--          trials_max, trial_timeout_ms, ttl_ms, half_open_retry_ms, arg1, arg2, arg3
--   op = acquire                          -> may let the call through
--   op = record  arg1=outcome(ok|fail|ignore) arg2=epoch arg3=error_type
--   op = force   arg1=target(closed|forced_open|disabled) arg3=reason
--   op = status
-- Returns {allowed, state, retry_at_ms, epoch, trial, consec, reopens, open_until,
--          window, last_error, then 5 fields per transition: from, to, reason, consec, error}.
local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local rate = tonumber(ARGV[4])
local wsize = tonumber(ARGV[5])
local min_calls = tonumber(ARGV[6])
local base = tonumber(ARGV[7])
local factor = tonumber(ARGV[8])
local maxo = tonumber(ARGV[9])
local trials_max = tonumber(ARGV[10])
local trial_timeout = tonumber(ARGV[11])
local ttl = tonumber(ARGV[12])
local half_open_retry = tonumber(ARGV[13])
local arg1, arg2, arg3 = ARGV[14], ARGV[15], ARGV[16]

local raw = redis.call('HGETALL', key)
local h = {}
for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
local st = h.state or 'closed'
local epoch = tonumber(h.epoch or '0')
local consec = tonumber(h.consec or '0')
local reopens = tonumber(h.reopens or '0')
local open_until = tonumber(h.open_until or '0')
local trials = tonumber(h.trials or '0')
local trial_ok = tonumber(h.trial_ok or '0')
local trial_deadline = tonumber(h.trial_deadline or '0')
local window = h.window or ''
local last_error = h.last_error or ''

local out = {}
local changed = false
local function go(to, reason, err)
  table.insert(out, st); table.insert(out, to); table.insert(out, reason)
  table.insert(out, consec); table.insert(out, err or '')
  st = to
  epoch = epoch + 1
  trials = 0
  trial_ok = 0
  changed = true
end
local function open(reason, err)
  local d = math.floor(base * (factor ^ reopens))
  if d > maxo then d = maxo end
  open_until = now + d
  window = ''
  go('open', reason, err)
end
local function push(bit)
  window = window .. bit
  if #window > wsize then window = string.sub(window, #window - wsize + 1) end
end

local allowed, retry_at, trial = 0, -1, 0
if op == 'acquire' then
  if st == 'open' and now >= open_until then
    go('half_open', 'open_timeout', '')
    trial_deadline = now + trial_timeout
  end
  if st == 'disabled' or st == 'closed' then
    allowed = 1
  elseif st == 'forced_open' then
    retry_at = -1
  elseif st == 'open' then
    retry_at = open_until
  elseif st == 'half_open' then
    if trials > 0 and now >= trial_deadline then
      trials = 0 -- permits of trials that never reported back expire
      changed = true
    end
    if trials + trial_ok < trials_max then
      allowed = 1
      trial = 1
      trials = trials + 1
      trial_deadline = now + trial_timeout
      changed = true
    else
      retry_at = now + half_open_retry
    end
  end
elseif op == 'record' then
  -- A result only counts for the state its call was let through in (same epoch):
  -- late results of a burst that already opened the breaker change nothing.
  if tonumber(arg2) == epoch then
    changed = true
    if arg1 == 'ok' then
      if st == 'closed' then
        consec = 0
        push('0')
      elseif st == 'half_open' then
        if trials > 0 then trials = trials - 1 end
        trial_ok = trial_ok + 1
        if trial_ok >= trials_max then
          consec = 0
          reopens = 0
          window = ''
          go('closed', 'trial_succeeded', '')
        end
      end
    elseif arg1 == 'fail' then
      last_error = arg3
      if st == 'closed' then
        consec = consec + 1
        push('1')
        local _, fails = string.gsub(window, '1', '')
        if consec >= threshold then
          reopens = 0
          open('consecutive_failures', arg3)
        elseif rate > 0 and #window >= min_calls and fails >= rate * #window then
          reopens = 0
          open('failure_rate', arg3)
        end
      elseif st == 'half_open' then
        consec = consec + 1
        reopens = reopens + 1
        open('trial_failed', arg3)
      end
    elseif arg1 == 'ignore' then
      if st == 'half_open' and trials > 0 then trials = trials - 1 end
    end
  end
elseif op == 'force' then
  if arg1 == 'closed' then
    consec = 0
    reopens = 0
    window = ''
    changed = true
    if st ~= 'closed' then go('closed', arg3, '') end
  elseif st ~= arg1 then
    go(arg1, arg3, '')
  end
end

if changed then
  redis.call('HSET', key, 'state', st, 'epoch', epoch, 'consec', consec, 'reopens', reopens,
    'open_until', open_until, 'trials', trials, 'trial_ok', trial_ok,
    'trial_deadline', trial_deadline, 'window', window, 'last_error', last_error,
    'updated', now)
  redis.call('PUBLISH', KEYS[2], key)
end
if changed or op == 'acquire' then redis.call('PEXPIRE', key, ttl) end

local res = {allowed, st, retry_at, epoch, trial, consec, reopens, open_until, window, last_error}
for _, v in ipairs(out) do table.insert(res, v) end
return res
