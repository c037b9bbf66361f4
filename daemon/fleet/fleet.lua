#!lua name=@LIB@
--[[
fleet.lua - the fleet's shared gate: the state of one lane's gate (its
buckets, slots, pauses, the provider's figures, the breaker and the learned
window) kept in Redis for every host that shares the provider's key, and
changed by one atomic step per launch and per answer, timed by Redis's own
clock (TIME), so that the hosts' clocks do not matter. Loaded by
daemon/fleet/fleet.c on each connection.

It is daemon/gate/gate.c written again, function for function and expression
for expression (the same order of operations, so the same doubles):
tests/test_fleet.c runs one table of cases through both and compares the
decisions and the state. Change one, change the other.

The keys of a share S: llmq:{S}:gate, the gate's fields (named as
gate_field_names[] in gate/gate-grant.c), its limits, epoch, claim and the pause's
reason, packed with cmsgpack; llmq:{S}:leases, a sorted set of the
launches in flight scored by their deadline; llmq:{S}:lease, a hash of each
lease's "class cost at host". llmq:{S}:hosts and llmq:host:ID are the
heartbeat's.

Every function takes, first of its arguments, the time to use instead of
TIME: empty from llmqd; a number of milliseconds only from the tests. The
gate's functions then take whether the answer should carry the state
(llmqd asks for it when its mirror is older than a moment; the tests, each
time), and the lane's limits.
]]

local WINDOW_AUTO, WINDOW_MINUTE, WINDOW_SECOND = 0, 1, 2
local NEVER = 1 / 0 -- math is not there yet while the library loads
local SLACK_MS = 20
local WINDOW_MS, WINDOW_LEAD_MS, WINDOW_TAIL_MS = 1000, 10, 25
local PROVIDER_FRESH_MS = 10000
local POCKET_MS = 1000
local RESERVE_IDLE_MS = 60000
local TRANSIT_MS = 10
local SHARE_TAU_MS = 60000
local BREAKER_TRIP, BREAKER_FIRST_MS, BREAKER_MAX_MS = 3, 1000, 60000
local SLOT_WAIT_MIN_MS, SLOT_WAIT_MAX_MS, SLOT_WAIT_UNKNOWN_MS = 5, 1000, 100
local CLAIM_GRACE_MS = 50
local TURNS, TURN_GRACE_MS, HOST_MAX = 32, 100, 64
local GRANT_MAX = 32
local BATCH, INTERACTIVE = 0, 1
local B_OK, B_CONCURRENCY, B_STAGGER, B_PAUSED, B_REQUESTS, B_TOKENS, B_CLAIMED, B_TURN =
  0, 1, 2, 3, 4, 5, 6, 7
local EV_ANSWERED, EV_UNREACHABLE, EV_RATE_LIMITED, EV_QUOTA, EV_NONE = 0, 1, 2, 3, 4

-- gate_field_names[] of gate.c, in its order; then the strings.
local FIELDS = {
  'in_flight', 'in_flight_batch', 'in_flight_interactive',
  'share_batch', 'share_interactive', 'share_at',
  'caller_seen_at', 'callers_seen', 'next_launch',
  'tok', 'req', 'refilled_at',
  'paused_until', 'seq_tokens', 'seq_requests',
  'seq_refunds', 'provider_tpm', 'provider_rpm',
  'window', 'probe', 'prov_tok_bucket',
  'prov_req_bucket', 'prov_tok_cap', 'prov_req_cap',
  'prov_seen_at', 'prov_mark_tokens', 'win_end',
  'allow_ms', 'allow_mark', 'faults',
  'fault_since', 'breaker_ms', 'no_credit_since',
  'learned', 'learned_at', 'confirmed_at',
  'probation_since', 'lat_ms', 'claim_until',
}
local LIMITS = {
  'max_concurrency', 'stagger_ms', 'stagger_jitter', 'tpm', 'rpm', 'headroom', 'burst_ms',
  'interactive_reserve', 'stagger_interactive', 'provider_window', 'probation_ms',
}

local function clock(arg)
  if arg ~= nil and arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function trunc(x)
  if x >= 0 then
    return math.floor(x)
  end
  return math.ceil(x)
end

-- A number as text that reads back the same: a whole one (every time, count
-- and id is) as it is, another with all its digits.
local function num(x)
  if x % 1 == 0 and x > -1e14 and x < 1e14 then
    return tostring(x)
  end
  return string.format('%.17g', x)
end

-- The gate, as gate.c has it.

local function per_ms(per_min, headroom)
  if per_min > 0 then
    return per_min * (1.0 - headroom) / 60000.0
  end
  return 0
end

local function tpm_limit(g)
  if g.provider_tpm > 0 and (g.lim.tpm == 0 or g.provider_tpm < g.lim.tpm) then
    return g.provider_tpm
  end
  return g.lim.tpm
end

local function rpm_limit(g)
  if g.provider_rpm > 0 and (g.lim.rpm == 0 or g.provider_rpm < g.lim.rpm) then
    return g.provider_rpm
  end
  return g.lim.rpm
end

local function tokens_per_ms(g)
  return per_ms(tpm_limit(g), g.lim.headroom)
end

local function requests_per_ms(g)
  return per_ms(rpm_limit(g), g.lim.headroom)
end

local function reserve_held(g, now)
  return g.lim.interactive_reserve > 0 and g.callers_seen ~= 0 and
         now - g.caller_seen_at < RESERVE_IDLE_MS
end

-- The pocket exists while callers are about, as of the last refill.
local function token_pocket(g)
  if not reserve_held(g, g.refilled_at) then
    return 0
  end
  return g.lim.interactive_reserve * tokens_per_ms(g) * POCKET_MS
end

local function req_pocket(g)
  if not reserve_held(g, g.refilled_at) then
    return 0
  end
  return g.lim.interactive_reserve * requests_per_ms(g) * POCKET_MS
end

local function burst_ms(g)
  if g.window == WINDOW_SECOND and g.lim.burst_ms > 1000 then
    return 1000
  end
  return g.lim.burst_ms
end

local function token_capacity(g)
  return tokens_per_ms(g) * (burst_ms(g) + SLACK_MS) + token_pocket(g)
end

local function req_capacity(g)
  local c = requests_per_ms(g) * burst_ms(g)
  if c < 1 then
    c = 1
  end
  return c + requests_per_ms(g) * SLACK_MS + req_pocket(g)
end

-- The most debt a bucket may carry: a minute of the lane's budget, or its
-- capacity when that is larger.
local function bound_debt(g)
  local tok_floor = -math.max(token_capacity(g), tokens_per_ms(g) * 60000.0)
  local req_floor = -math.max(req_capacity(g), requests_per_ms(g) * 60000.0)
  if g.tok < tok_floor then
    g.tok = tok_floor
  end
  if g.req < req_floor then
    g.req = req_floor
  end
end

local function provider_fresh(g, now)
  return g.window ~= WINDOW_SECOND and g.prov_seen_at > 0 and
         (g.in_flight > 0 or now - g.prov_seen_at <= PROVIDER_FRESH_MS)
end

local function fixed(g)
  return g.window == WINDOW_SECOND
end

local function tok_cap_now(g, now)
  local c = token_capacity(g)
  if fixed(g) then
    return tokens_per_ms(g) * WINDOW_MS
  end
  if provider_fresh(g, now) and g.prov_tok_cap > c then
    return g.prov_tok_cap
  end
  return c
end

local function req_cap_now(g, now)
  local c = req_capacity(g)
  if fixed(g) then
    return requests_per_ms(g) * WINDOW_MS
  end
  if provider_fresh(g, now) and g.prov_req_cap > c then
    return g.prov_req_cap
  end
  return c
end

local function tok_burst_now(g, now)
  local b = tokens_per_ms(g) * burst_ms(g)
  if provider_fresh(g, now) and g.prov_tok_cap > b then
    return g.prov_tok_cap
  end
  return b
end

local function batch_slots(g)
  local keep = math.ceil(g.lim.interactive_reserve * g.lim.max_concurrency - 1e-9)
  local n = g.lim.max_concurrency - keep
  if n < 1 then
    return 1
  end
  return n
end

local function decay_share(g, now)
  if now <= g.share_at then
    return
  end
  local f = math.exp(-(now - g.share_at) / SHARE_TAU_MS)
  g.share[BATCH] = g.share[BATCH] * f
  g.share[INTERACTIVE] = g.share[INTERACTIVE] * f
  g.share_at = now
end

local function first_class(g, now)
  decay_share(g, now)
  local total = g.share[BATCH] + g.share[INTERACTIVE]
  if total > 0 and g.share[INTERACTIVE] > (1.0 - g.lim.interactive_reserve) * total then
    return BATCH
  end
  return INTERACTIVE
end

local function refill(g, now)
  if now <= g.refilled_at then
    return
  end
  if fixed(g) then
    if now >= g.win_end then
      g.win_end = g.win_end + (math.floor((now - g.win_end) / WINDOW_MS) + 1) * WINDOW_MS
      g.tok = tok_cap_now(g, now)
      g.req = req_cap_now(g, now)
    end
    g.refilled_at = now
    return
  end
  local dt = now - g.refilled_at
  g.tok = math.min(tok_cap_now(g, now), g.tok + tokens_per_ms(g) * dt)
  g.req = math.min(req_cap_now(g, now), g.req + requests_per_ms(g) * dt)
  g.refilled_at = now
end

local function clamp_limits(lim)
  if lim.max_concurrency < 1 then
    lim.max_concurrency = 1
  end
  if lim.headroom < 0 then
    lim.headroom = 0
  end
  if lim.headroom > 0.9 then
    lim.headroom = 0.9
  end
  if not (lim.interactive_reserve >= 0) then
    lim.interactive_reserve = 0
  end
  if lim.interactive_reserve > 0.9 then
    lim.interactive_reserve = 0.9
  end
end

local function set_window(g, window, now)
  refill(g, now)
  if g.window == WINDOW_SECOND and window ~= WINDOW_SECOND then
    g.allow_ms = WINDOW_MS
    g.allow_mark = g.seq_tokens
    g.prov_tok_cap = 0
    g.prov_req_cap = 0
    g.prov_seen_at = 0
    g.tok = math.min(g.tok, token_capacity(g))
    g.req = math.min(g.req, req_capacity(g))
  end
  if window == WINDOW_SECOND then
    g.window = WINDOW_SECOND
  else
    g.window = WINDOW_MINUTE
  end
  if g.window == WINDOW_SECOND then
    g.prov_seen_at = 0
    g.win_end = now + WINDOW_MS
    g.tok = math.min(g.tok, tok_cap_now(g, now))
    g.req = math.min(g.req, req_cap_now(g, now))
  end
end

local function align_window(g, boundary, now)
  if not fixed(g) then
    return
  end
  refill(g, now)
  while boundary - now > WINDOW_MS do
    boundary = boundary - WINDOW_MS
  end
  while boundary <= now do
    boundary = boundary + WINDOW_MS
  end
  g.win_end = boundary
end

local function set_limits(g, lim, now)
  refill(g, now)
  g.lim = lim
  clamp_limits(g.lim)
  g.tok = math.min(g.tok, token_capacity(g))
  g.req = math.min(g.req, req_capacity(g))
end

local function wait_for(level, need, rate)
  if level >= need then
    return 0
  end
  return math.ceil((need - level) / rate - 1e-9)
end

local function gate_pause(g, untill, reason)
  if untill <= g.paused_until then
    return
  end
  g.paused_until = untill
  g.pause_reason = reason
end

local function gate_when(g, cls, cost, now)
  local why, t = B_OK, now
  local batch = cls == BATCH
  if not batch then
    g.caller_seen_at = now
    g.callers_seen = 1
  end
  local keep = batch and reserve_held(g, now)
  local tok_keep, req_keep = 0, 0
  if keep and not fixed(g) then
    tok_keep = token_pocket(g)
    req_keep = req_pocket(g)
  end
  refill(g, now)
  if g.in_flight >= g.lim.max_concurrency or (g.probe ~= 0 and g.in_flight > 0) or
     (keep and g.cif[BATCH] >= batch_slots(g)) then
    return NEVER, B_CONCURRENCY
  end
  if g.paused_until > t then
    t = g.paused_until
    why = B_PAUSED
  end
  if batch and g.claim_until > t and first_class(g, now) == INTERACTIVE then
    t = g.claim_until
    why = B_CLAIMED
  end
  if g.next_launch > t and (cls == BATCH or g.lim.stagger_interactive ~= 0) then
    t = g.next_launch
    why = B_STAGGER
  end
  if fixed(g) then
    local next_window = g.win_end + WINDOW_LEAD_MS
    if t > now then
      return t, why
    end
    if now < g.win_end - WINDOW_MS + WINDOW_LEAD_MS then
      t = g.win_end - WINDOW_MS + WINDOW_LEAD_MS
      why = B_REQUESTS
    elseif now >= g.win_end - WINDOW_TAIL_MS or
           (rpm_limit(g) > 0 and g.req < 1 - 1e-9) or
           (tpm_limit(g) > 0 and g.tok < math.min(cost, tok_cap_now(g, now)) - 1e-9) then
      t = next_window
      if tpm_limit(g) > 0 and g.tok < cost then
        why = B_TOKENS
      else
        why = B_REQUESTS
      end
    end
    return t, why
  end
  if rpm_limit(g) > 0 then
    local w = now + wait_for(g.req, 1 + req_keep, requests_per_ms(g))
    if w > t then
      t = w
      why = B_REQUESTS
    end
  end
  if tpm_limit(g) > 0 then
    local need = math.min(cost, tok_burst_now(g, now))
    local w = now + wait_for(g.tok, need + tok_keep, tokens_per_ms(g))
    if w > t then
      t = w
      why = B_TOKENS
    end
  end
  return t, why
end

local function gate_launch(g, cls, cost, now, jitter01)
  refill(g, now)
  if cls == INTERACTIVE then
    g.caller_seen_at = now
    g.callers_seen = 1
  end
  local room = provider_fresh(g, now) and 1 or 0
  decay_share(g, now)
  if cost > 0 then
    g.share[cls] = g.share[cls] + cost
  else
    g.share[cls] = g.share[cls] + 1
  end
  g.in_flight = g.in_flight + 1
  g.cif[cls] = g.cif[cls] + 1
  g.tok = g.tok - cost
  g.req = g.req - 1
  bound_debt(g)
  g.seq_tokens = g.seq_tokens + cost
  g.seq_requests = g.seq_requests + 1
  if cls == BATCH or g.lim.stagger_interactive ~= 0 then
    g.next_launch = now + g.lim.stagger_ms +
                    trunc(g.lim.stagger_ms * g.lim.stagger_jitter * jitter01)
  end
  return {g.seq_tokens, g.seq_requests, g.seq_refunds, now, room}
end

local function gate_done(g, cls, charged, used, now)
  refill(g, now)
  if g.in_flight > 0 then
    g.in_flight = g.in_flight - 1
  end
  if g.cif[cls] > 0 then
    g.cif[cls] = g.cif[cls] - 1
  end
  if used < 0 then
    return
  end
  if fixed(g) and used < charged then
    return
  end
  g.tok = math.min(tok_cap_now(g, now), g.tok + (charged - used))
  bound_debt(g)
  g.seq_refunds = g.seq_refunds + (charged - used)
end

local function provider_capacity(remaining, reset_ms, per_min)
  local full = per_min
  if reset_ms >= 0 and remaining + reset_ms * full / 60000.0 < full then
    return remaining + reset_ms * full / 60000.0
  end
  return full
end

-- which: 'tok' or 'req'; bucket: the field of the provider's bucket.
local function follow(g, which, bucket, remaining, reset_ms, per_min, since, refunded, elapsed,
                      newest)
  if remaining < 0 or per_min <= 0 then
    return -1
  end
  local cap = provider_capacity(remaining, reset_ms, per_min)
  -- The first TRANSIT_MS of refill after the launch is not counted.
  elapsed = elapsed - TRANSIT_MS
  if elapsed < 0 then
    elapsed = 0
  end
  local view = math.min(cap, remaining + refunded + per_min / 60000.0 * elapsed) -
               g.lim.headroom * cap - since
  if view < g[which] then
    g[which] = view
  end
  if g.window ~= WINDOW_SECOND and newest then
    g[bucket] = cap * (1.0 - g.lim.headroom)
  end
  return view
end

local function allow(g)
  g.prov_tok_cap = math.min(g.prov_tok_bucket, tokens_per_ms(g) * g.allow_ms)
  g.prov_req_cap = math.min(g.prov_req_bucket, requests_per_ms(g) * g.allow_ms)
end

local function grow(g, tok_before, req_before)
  local own_tok, own_req = token_capacity(g), req_capacity(g)
  allow(g)
  if g.prov_tok_cap > math.max(tok_before, own_tok) then
    g.tok = g.tok + (g.prov_tok_cap - math.max(tok_before, own_tok))
  end
  if g.prov_req_cap > math.max(req_before, own_req) then
    g.req = g.req + (g.prov_req_cap - math.max(req_before, own_req))
  end
end

local function gate_confirm(g, mark)
  if g.window == WINDOW_SECOND or mark[1] <= g.allow_mark or g.allow_ms >= 2 * 60000 then
    return
  end
  g.allow_ms = g.allow_ms * 2
  g.allow_mark = g.seq_tokens
  grow(g, g.prov_tok_cap, g.prov_req_cap)
end

-- fb: limit_tokens, remaining_tokens, reset_tokens_ms, limit_requests,
-- remaining_requests, reset_requests_ms; mark: tokens, requests, refunds, at.
local function gate_observe(g, fb, mark, now)
  local newest = mark[1] >= g.prov_mark_tokens
  refill(g, now)
  if not provider_fresh(g, now) then
    g.allow_ms = WINDOW_MS
    g.allow_mark = g.seq_tokens
    g.prov_tok_cap = 0
    g.prov_req_cap = 0
  end
  if fb[1] > 0 then
    g.provider_tpm = fb[1]
  end
  if fb[4] > 0 then
    g.provider_rpm = fb[4]
  end
  local tok_before, req_before = g.prov_tok_cap, g.prov_req_cap
  local tok_view = follow(g, 'tok', 'prov_tok_bucket', fb[2], fb[3], tpm_limit(g),
                          g.seq_tokens - mark[1], g.seq_refunds - mark[3], now - mark[4], newest)
  local req_view = follow(g, 'req', 'prov_req_bucket', fb[5], fb[6], rpm_limit(g),
                          g.seq_requests - mark[2], 0, now - mark[4], newest)
  if g.window ~= WINDOW_SECOND and newest then
    grow(g, tok_before, req_before)
    if tok_before == 0 and tok_view >= 0 then
      g.tok = math.max(g.tok, math.min(tok_view, g.prov_tok_cap))
    end
    if req_before == 0 and req_view >= 0 then
      g.req = math.max(g.req, math.min(req_view, g.prov_req_cap))
    end
  end
  if newest and g.window ~= WINDOW_SECOND and (fb[2] >= 0 or fb[5] >= 0) then
    g.prov_seen_at = now
    g.prov_mark_tokens = mark[1]
  end
  -- The provider's word that its bucket was full when this launch arrived.
  if newest and fb[1] > 0 and fb[2] >= fb[1] then
    g.tok = math.max(g.tok, math.min(tok_view, tok_cap_now(g, now)))
  end
  if newest and fb[4] > 0 and fb[5] >= fb[4] then
    g.req = math.max(g.req, math.min(req_view, req_cap_now(g, now)))
  end
  bound_debt(g)
  if fb[5] == 0 and fb[6] > 0 then
    gate_pause(g, now + fb[6], 'provider reports no requests left')
  end
end

local function gate_charge(g, tokens, requests, now)
  refill(g, now)
  g.tok = g.tok - tokens
  g.req = g.req - requests
  bound_debt(g)
  g.seq_tokens = g.seq_tokens + tokens
  g.seq_requests = g.seq_requests + requests
end

local function gate_drain(g, now)
  refill(g, now)
  if g.tok > 0 then
    g.tok = 0
  end
  if g.req > 0 then
    g.req = 0
  end
end

local function gate_learn(g, now, news)
  if g.lim.provider_window ~= WINDOW_AUTO then
    return
  end
  if g.window == WINDOW_SECOND then
    g.confirmed_at = now
    return
  end
  set_window(g, WINDOW_SECOND, now)
  g.learned = 1
  g.learned_at = now
  g.confirmed_at = now
  news.learned = 1
  if g.probation_since ~= 0 then
    news.probation_ended = 1
  end
  g.probation_since = 0
end

local function lane_event(g, a, now, news)
  if a.event == EV_NONE then
    return
  elseif a.event == EV_UNREACHABLE then
    if g.faults == 0 then
      g.fault_since = now
    end
    g.faults = g.faults + 1
    if g.faults < BREAKER_TRIP then
      return
    end
    if g.breaker_ms ~= 0 then
      g.breaker_ms = g.breaker_ms * 2
    else
      g.breaker_ms = BREAKER_FIRST_MS
    end
    if g.breaker_ms > BREAKER_MAX_MS then
      g.breaker_ms = BREAKER_MAX_MS
    end
    gate_pause(g, now + g.breaker_ms,
               string.format('upstream unreachable; probing every %ds', trunc(g.breaker_ms / 1000)))
    g.probe = 1
    if g.faults == BREAKER_TRIP then
      news.breaker_open = 1
    end
    return
  elseif a.event == EV_QUOTA then
    if g.no_credit_since == 0 then
      g.no_credit_since = now
    end
    gate_pause(g, now + a.pause_ms,
               string.format('insufficient_quota: probing every %ds', trunc(a.pause_ms / 1000)))
    if g.probe == 0 then
      news.no_credit = 1
    end
    g.probe = 1
  elseif a.event == EV_RATE_LIMITED then
    gate_pause(g, now + a.pause_ms, '429 from upstream')
    gate_drain(g, now)
    news.rate_limited = 1
    if a.learn ~= 0 or g.window == WINDOW_SECOND then
      gate_learn(g, now, news)
    end
    if g.window == WINDOW_SECOND and a.retry_after_ms >= 0 and a.retry_after_ms <= WINDOW_MS then
      align_window(g, now + a.retry_after_ms, now)
      news.aligned = 1
    end
    g.probe = 0
    g.no_credit_since = 0
  else
    if g.probe ~= 0 or g.faults >= BREAKER_TRIP then
      news.resumed = 1
    end
    g.probe = 0
    g.no_credit_since = 0
  end
  g.faults = 0
  g.breaker_ms = 0
end

local function gate_settle(g, a, now)
  local news = {breaker_open = 0, resumed = 0, no_credit = 0, rate_limited = 0, learned = 0,
                probation_ended = 0, aligned = 0}
  if a.observe ~= 0 then
    gate_observe(g, a.fb, a.mark, now)
    if a.succeeded ~= 0 then
      gate_confirm(g, a.mark)
    end
  end
  if a.done ~= 0 then
    gate_done(g, a.cls, a.charged, a.used, now)
    if a.observe ~= 0 and a.mark[4] > 0 and now >= a.mark[4] then
      local took = now - a.mark[4]
      if g.lat_ms ~= 0 then
        g.lat_ms = trunc((g.lat_ms * 7 + took) / 8)
      else
        g.lat_ms = took
      end
    end
  end
  if a.resends > 0 then
    gate_charge(g, a.charged * a.resends, a.resends, now)
  end
  lane_event(g, a, now, news)
  return news
end

local function gate_probation(g, now)
  if g.learned == 0 or g.window ~= WINDOW_SECOND or g.lim.provider_window ~= WINDOW_AUTO or
     g.lim.probation_ms <= 0 or now - g.confirmed_at < g.lim.probation_ms then
    return 0
  end
  set_window(g, WINDOW_MINUTE, now)
  g.learned = 0
  g.probation_since = now
  return 1
end

local function slot_wait(g, oldest_at, now)
  local w = SLOT_WAIT_UNKNOWN_MS
  if oldest_at ~= NEVER and g.lat_ms > 0 then
    w = oldest_at + g.lat_ms - now
  end
  if w < SLOT_WAIT_MIN_MS then
    w = SLOT_WAIT_MIN_MS
  end
  if w > SLOT_WAIT_MAX_MS then
    w = SLOT_WAIT_MAX_MS
  end
  return w
end

-- g.turns: {host, until, host, until, ...}, first told to wait first.
local function turns_expire(g, now)
  local kept = {}
  for i = 1, #g.turns, 2 do
    if g.turns[i + 1] > now then
      kept[#kept + 1] = g.turns[i]
      kept[#kept + 1] = g.turns[i + 1]
    end
  end
  g.turns = kept
end

local function turn_of(g, host)
  for i = 1, #g.turns, 2 do
    if g.turns[i] == host then
      return (i + 1) / 2 - 1
    end
  end
  return -1
end

local function turn_wait(g, host, untill)
  local i = turn_of(g, host)
  if i < 0 then
    if #g.turns / 2 == TURNS or string.len(host) > HOST_MAX then
      return
    end
    g.turns[#g.turns + 1] = host
    g.turns[#g.turns + 1] = untill
    return
  end
  g.turns[2 * i + 2] = untill
end

local function gate_grant(g, ask, now)
  local r = {granted = 0, marks = {}, wait_ms = 0, why = B_OK, probation = 0}
  local n = ask.n
  if n < 1 then
    n = 1
  elseif n > GRANT_MAX then
    n = GRANT_MAX
  end
  local t, why = now, B_OK
  local turns, mine = ask.cls == BATCH and ask.host ~= nil and ask.host ~= '', -1
  r.probation = gate_probation(g, now)
  if turns then
    turns_expire(g, now)
    mine = turn_of(g, ask.host)
    if #g.turns > 0 and mine ~= 0 then
      r.why = B_TURN
      r.wait_ms = g.turns[2] - now
      turn_wait(g, ask.host, now + r.wait_ms + TURN_GRACE_MS)
      return r
    end
  end
  while r.granted < n do
    t, why = gate_when(g, ask.cls, ask.cost, now)
    if t > now then
      break
    end
    r.granted = r.granted + 1
    r.marks[r.granted] = gate_launch(g, ask.cls, ask.cost, now, ask.jitter01)
  end
  local claimed = ask.cls == INTERACTIVE and ask.claim ~= '' and ask.claim ~= '0'
  if claimed and r.granted > 0 and g.claim == ask.claim then
    g.claim = ''
    g.claim_until = 0
  end
  if turns and mine == 0 and r.granted > 0 then
    table.remove(g.turns, 1)
    table.remove(g.turns, 1)
  end
  if r.granted == n then
    return r
  end
  r.why = why
  if t == NEVER then
    r.wait_ms = slot_wait(g, ask.oldest_at(), now)
  else
    r.wait_ms = t - now
  end
  if turns and r.granted == 0 then
    turn_wait(g, ask.host, now + r.wait_ms + TURN_GRACE_MS)
  end
  if claimed and r.granted == 0 then
    local untill = now + r.wait_ms + CLAIM_GRACE_MS
    if g.claim_until <= now or g.claim == ask.claim or untill > g.claim_until then
      g.claim_until = untill
      g.claim = ask.claim
    end
  end
  return r
end

local function gate_adopt(g, cls, cost, now)
  g.in_flight = g.in_flight + 1
  g.cif[cls] = g.cif[cls] + 1
  gate_charge(g, cost, 1, now)
end

-- The state in Redis.

local function gate_init(lim, now)
  local g = {}
  for _, f in ipairs(FIELDS) do
    g[f] = 0
  end
  g.lim = lim
  clamp_limits(g.lim)
  g.share_at = now
  g.refilled_at = now
  g.next_launch = now
  g.window = WINDOW_MINUTE
  g.allow_ms = WINDOW_MS
  g.tok = token_capacity(g)
  g.req = req_capacity(g)
  g.pause_reason = ''
  g.claim = ''
  g.turns = {}
  -- A pinned window is the lane's from the start (as the scheduler does).
  if lim.provider_window ~= WINDOW_AUTO then
    set_window(g, lim.provider_window, now)
  end
  return g
end

local function limits_from(args, at)
  local lim = {}
  for k, name in ipairs(LIMITS) do
    lim[name] = tonumber(args[at + k - 1])
  end
  return lim
end

local function limits_differ(a, b)
  for _, name in ipairs(LIMITS) do
    if a[name] ~= b[name] then
      return true
    end
  end
  return false
end

-- The gate of key, created (as a fresh lane's: pacing from nothing) when
-- Redis has none; lim applied when it changed. Also its epoch: a new one
-- each time the state is created, so that hosts see a Redis that lost it.
-- Kept packed (cmsgpack: numbers as they are, every digit), one value.
local function load(key, lim, now)
  local raw = redis.call('GET', key)
  local nf, nl = #FIELDS, #LIMITS
  local g, v
  if not raw then
    local t = redis.call('TIME')
    g = gate_init(lim, now)
    g.cif = {[BATCH] = 0, [INTERACTIVE] = 0}
    g.share = {[BATCH] = 0, [INTERACTIVE] = 0}
    g.epoch = t[1] .. string.format('%06d', tonumber(t[2]))
    return g
  end
  v = cmsgpack.unpack(raw)
  g = {lim = {}}
  for k = 1, nf do
    g[FIELDS[k]] = v[k]
  end
  for k = 1, nl do
    g.lim[LIMITS[k]] = v[nf + k]
  end
  g.epoch = v[nf + nl + 1]
  g.claim = v[nf + nl + 2]
  g.pause_reason = v[nf + nl + 3]
  g.turns = v[nf + nl + 4] or {}
  g.cif = {[BATCH] = g.in_flight_batch, [INTERACTIVE] = g.in_flight_interactive}
  g.share = {[BATCH] = g.share_batch, [INTERACTIVE] = g.share_interactive}
  if limits_differ(g.lim, lim) then
    set_limits(g, lim, now)
  end
  return g
end

local function save(key, g)
  local out, nf = {}, #FIELDS
  g.in_flight_batch = g.cif[BATCH]
  g.in_flight_interactive = g.cif[INTERACTIVE]
  g.share_batch = g.share[BATCH]
  g.share_interactive = g.share[INTERACTIVE]
  for k, f in ipairs(FIELDS) do
    out[k] = g[f]
  end
  for k, name in ipairs(LIMITS) do
    out[nf + k] = g.lim[name]
  end
  out[#out + 1] = g.epoch
  out[#out + 1] = g.claim
  out[#out + 1] = g.pause_reason
  out[#out + 1] = g.turns
  redis.call('SET', key, cmsgpack.pack(out))
end

--[[
The tail of every answer: Redis's time, the state's epoch, and when asked
the state as text for the hosts to mirror: its FIELDS, a line each, then
the pause's reason.
]]
local function answer(out, g, now, with_state)
  out[#out + 1] = num(now)
  out[#out + 1] = g.epoch
  if not with_state then
    out[#out + 1] = ''
    return out
  end
  local text = {}
  for k, f in ipairs(FIELDS) do
    text[k] = num(g[f])
  end
  text[#text + 1] = (string.gsub(g.pause_reason, '\n', ' '))
  out[#out + 1] = table.concat(text, '\n')
  return out
end

local function lease_parse(v)
  local cls, cost, at, host = string.match(v, '^(%d+) (%-?%d+) (%-?%d+) (.*)$')
  return tonumber(cls), tonumber(cost), tonumber(at), host
end

-- Leases past their deadline: their host is gone; the slot comes back, the
-- estimate stays spent (the request may have reached the provider).
local function sweep(g, keys, now)
  local ids = redis.call('ZRANGEBYSCORE', keys[2], '-inf', now)
  for _, id in ipairs(ids) do
    local v = redis.call('HGET', keys[3], id)
    if v then
      local cls, cost = lease_parse(v)
      gate_done(g, cls, cost, -1, now)
      redis.call('HDEL', keys[3], id)
    end
    redis.call('ZREM', keys[2], id)
  end
end

local function oldest_at(keys)
  local first = redis.call('ZRANGE', keys[2], 0, 0)
  if #first == 0 then
    return NEVER
  end
  local v = redis.call('HGET', keys[3], first[1])
  if not v then
    return NEVER
  end
  local _, _, at = lease_parse(v)
  return at
end

local function lease_add(keys, id, cls, cost, now, deadline_ms, host)
  redis.call('ZADD', keys[2], now + deadline_ms, id)
  redis.call('HSET', keys[3], id, string.format('%d %d %d %s', cls, cost, now, host))
end

--[[
grant: launches for one lane. KEYS: the share's gate, leases, lease. ARGV:
now, whether to answer the state ("1"), the 11 limits (LIMITS), class, cost, n, jitter, claim (an interactive
call's id, or 0), deadline_ms, host, then n lease ids. Answers: granted,
wait_ms, why, probation, then 5 per launch granted (the mark: tokens,
requests, refunds, at, room), then the answer's tail (see answer()).
]]
local function grant(keys, args)
  local now = clock(args[1])
  local lim = limits_from(args, 3)
  local a = 3 + #LIMITS
  local ask = {cls = tonumber(args[a]), cost = tonumber(args[a + 1]), n = tonumber(args[a + 2]),
               jitter01 = tonumber(args[a + 3]), claim = args[a + 4], host = args[a + 6]}
  local deadline_ms, host = tonumber(args[a + 5]), args[a + 6]
  local g = load(keys[1], lim, now)
  sweep(g, keys, now)
  ask.oldest_at = function()
    return oldest_at(keys)
  end
  local r = gate_grant(g, ask, now)
  local out = {r.granted, r.wait_ms, r.why, r.probation}
  for k = 1, r.granted do
    lease_add(keys, args[a + 6 + k], ask.cls, ask.cost, now, deadline_ms, host)
    for _, v in ipairs(r.marks[k]) do
      out[#out + 1] = num(v)
    end
  end
  save(keys[1], g)
  return answer(out, g, now, args[2] == '1')
end

--[[
settle: launches' answers, in order (a host sends those of one loop turn
together). ARGV: now, the state?, the 11 limits, then 21 for each answer:
the lease's id, class, charged, used, succeeded, resends, observe, the 6
figures of the provider (-1 where absent), the mark (tokens, requests,
refunds, at), event, pause_ms, learn, retry_after_ms. A lease is settled
once: a second settle, or one for a lease swept as expired, gives no slot
back. Answers, for each: done and the 7 news (breaker_open, resumed,
no_credit, rate_limited, learned, probation_ended, aligned); then the
answer's tail.
]]
local function settle(keys, args)
  local now = clock(args[1])
  local lim = limits_from(args, 3)
  local a = 3 + #LIMITS
  local g = load(keys[1], lim, now)
  local out = {}
  for k = a, #args - 20, 21 do
    local id, x = args[k], {}
    for i = k + 1, k + 20 do
      x[#x + 1] = tonumber(args[i])
    end
    local ans = {cls = x[1], charged = x[2], used = x[3], succeeded = x[4], resends = x[5],
                 observe = x[6], fb = {x[7], x[8], x[9], x[10], x[11], x[12]},
                 mark = {x[13], x[14], x[15], x[16]}, event = x[17], pause_ms = x[18],
                 learn = x[19], retry_after_ms = x[20], done = 0}
    if redis.call('HDEL', keys[3], id) == 1 then
      ans.done = 1
      redis.call('ZREM', keys[2], id)
    end
    local news = gate_settle(g, ans, now)
    for _, v in ipairs({ans.done, news.breaker_open, news.resumed, news.no_credit,
                        news.rate_limited, news.learned, news.probation_ended, news.aligned}) do
      out[#out + 1] = v
    end
  end
  save(keys[1], g)
  return answer(out, g, now, args[2] == '1')
end

--[[
reconcile: a host (back from gating alone, or seeing a new epoch) makes
its leases the launches it has in flight. ARGV: now, 1, the 11 limits, host,
deadline_ms, then id, class, cost for each launch in flight. Its leases
that are not among them are settled without a refund (answered while Redis
was away, or granted while the answer was lost); those missing are adopted
(their slot taken, their cost charged). Answers: adopted, dropped, then the
answer's tail, with the state.
]]
local function reconcile(keys, args)
  local now = clock(args[1])
  local lim = limits_from(args, 3)
  local a = 3 + #LIMITS
  local host, deadline_ms = args[a], tonumber(args[a + 1])
  local g = load(keys[1], lim, now)
  local live, adopted, dropped = {}, 0, 0
  sweep(g, keys, now)
  for i = a + 2, #args, 3 do
    live[args[i]] = true
  end
  local all = redis.call('HGETALL', keys[3])
  for i = 1, #all, 2 do
    local cls, cost, _, h = lease_parse(all[i + 1])
    if h == host and not live[all[i]] then
      gate_done(g, cls, cost, -1, now)
      redis.call('HDEL', keys[3], all[i])
      redis.call('ZREM', keys[2], all[i])
      dropped = dropped + 1
    end
  end
  for i = a + 2, #args, 3 do
    if redis.call('HEXISTS', keys[3], args[i]) == 0 then
      local cls, cost = tonumber(args[i + 1]), tonumber(args[i + 2])
      gate_adopt(g, cls, cost, now)
      lease_add(keys, args[i], cls, cost, now, deadline_ms, host)
      adopted = adopted + 1
    end
  end
  save(keys[1], g)
  return answer({adopted, dropped}, g, now, true)
end

--[[
state: the shared gate as it stands, its expired leases swept (so that a
host that asks nothing still sees the others' launches, and a dead host's
slots come back). ARGV: now, 1, the 11 limits. Answers the tail, with the
state.
]]
local function peek(keys, args)
  local now = clock(args[1])
  local g = load(keys[1], limits_from(args, 3), now)
  sweep(g, keys, now)
  save(keys[1], g)
  return answer({}, g, now, true)
end

--[[
beat: a host is alive. KEYS[1] is llmq:host:ID (its heartbeat key, with a
TTL); KEYS[2..] are the hosts of each share it serves (llmq:{SHARE}:hosts,
a sorted set scored by when each host's heartbeat runs out). ARGV: now,
the host's id, the TTL in ms, what the host says of itself. Answers how
many hosts are alive per share, this one included.
]]
local function beat(keys, args)
  local now = clock(args[1])
  local id, ttl = args[2], tonumber(args[3])
  local out = {}
  redis.call('SET', keys[1], args[4], 'PX', ttl)
  for i = 2, #keys do
    redis.call('ZADD', keys[i], now + ttl, id)
    redis.call('ZREMRANGEBYSCORE', keys[i], '-inf', now)
    redis.call('PEXPIRE', keys[i], ttl)
    out[#out + 1] = redis.call('ZCARD', keys[i])
  end
  return out
end

redis.register_function('@LIB@_beat', beat)
redis.register_function('@LIB@_grant', grant)
redis.register_function('@LIB@_settle', settle)
redis.register_function('@LIB@_reconcile', reconcile)
redis.register_function('@LIB@_state', peek)
