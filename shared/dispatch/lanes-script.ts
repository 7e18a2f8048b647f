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
 * Returns a flat array of triples: id, score (as Redis stores it) and the index of its lane in
 * KEYS (2..), so that ids whose claim then fails can be put back where they were
 * (ZADD NX). Returns nil when KEYS[1] (the epoch marker) is missing: the lanes were
 * flushed or never built, and the caller must claim from Postgres until reconcile has rebuilt them.
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
    local hits = redis.call('ZRANGEBYSCORE', KEYS[i], lo, hi, 'WITHSCORES', 'LIMIT', 0, quota)
    if #hits > 0 then
      local ids = {}
      for j = 1, #hits, 2 do
        ids[#ids + 1] = hits[j]
        out[#out + 1] = hits[j]
        out[#out + 1] = hits[j + 1]
        out[#out + 1] = i
      end
      redis.call('ZREM', KEYS[i], unpack(ids))
      want = want - #ids
    end
  end
end
return out
`;
