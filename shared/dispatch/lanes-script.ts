/**
 * Lua run atomically in Redis (Upstash serves EVAL/EVALSHA too). A lane is a sorted set per job
 * type; a member is a job id and its score is priority * BAND + vtime, so ZRANGEBYSCORE over one
 * band yields that priority's jobs in fair order.
 */

/** 2^44: room for 17 trillion virtual-time steps a band, and 3 bands stay below 2^53. */
export const BAND = 2 ** 44;

/**
 * Pops up to ARGV[1] ids from the lanes KEYS[2..], highest priority band first; within a band the
 * count is shared out between the types so one type's backlog does not starve another's.
 * Returns nil when KEYS[1] (the epoch marker) is missing: the lanes were flushed or never built,
 * and the caller must claim from Postgres until reconcile has rebuilt them.
 */
export const POP_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local want = tonumber(ARGV[1])
local band = tonumber(ARGV[2])
local out = {}
for p = 0, 2 do
  if want <= 0 then break end
  local lo = string.format('%.0f', p * band)
  local hi = '(' .. string.format('%.0f', (p + 1) * band)
  local left = #KEYS - 1
  for i = 2, #KEYS do
    if want <= 0 then break end
    local quota = math.ceil(want / left)
    left = left - 1
    local ids = redis.call('ZRANGEBYSCORE', KEYS[i], lo, hi, 'LIMIT', 0, quota)
    if #ids > 0 then
      redis.call('ZREM', KEYS[i], unpack(ids))
      for _, id in ipairs(ids) do out[#out + 1] = id end
      want = want - #ids
    end
  end
end
return out
`;
