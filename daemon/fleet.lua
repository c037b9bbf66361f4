#!lua name=@LIB@
--[[
fleet.lua - the fleet's shared state in Redis, as one library of functions,
each one atomic step timed by Redis's own clock (TIME), so that the hosts'
clocks do not matter. Loaded by daemon/fleet.c on each connection.

Every function takes, first of its arguments, the time to use instead of
TIME: empty from llmqd, a number of milliseconds only from the tests, which
drive the decisions case by case against gate.c.
]]

local function clock(arg)
  if arg ~= nil and arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
