-- Notes how far a chain is in the history archive (PostgreSQL) and drops the
-- sealed records Redis no longer needs to keep.
--
-- KEYS: [1] chain head (hash), [2] sealed stream
-- ARGV: [1] seq of the last record in the archive, [2] its hash, [3] MINID
--       for the sealed stream ('' = trim nothing): the first record to keep
-- The head's `archived`/`archived_hash` only ever move forward, so a writer
-- that lost its lease and reports an older position changes nothing; the
-- trim drops only what the caller saw committed in the archive (and exported
-- to segment files when that is on), so a late trim loses nothing either.
local cur = tonumber(redis.call('HGET', KEYS[1], 'archived') or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'archived', ARGV[1], 'archived_hash', ARGV[2])
end
if ARGV[3] ~= '' then
  return redis.call('XTRIM', KEYS[2], 'MINID', ARGV[3])
end
return 0
