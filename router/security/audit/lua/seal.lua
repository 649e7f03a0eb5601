-- Appends sealed records to a chain and advances its head, atomically.
--
-- KEYS: [1] chain head (hash: seq, hash, src, ord, at), [2] sealed stream
-- ARGV: [1] expected head seq, [2] expected head hash, [3] last source id of
--       the batch, [4] its ordinal among all entries ever added to the source
--       ('' when unknown), then per record: seq, hash, record JSON
-- Returns {1, new seq, last sealed stream id}, or {0, seq, hash} when the
-- head is not where the caller expected (another replica sealed
-- first, e.g. right after a lease moved): nothing is written, so two sealers
-- can never fork the chain; the caller reloads the head and reads again.
local head = redis.call('HMGET', KEYS[1], 'seq', 'hash')
local seq = tonumber(head[1] or '0')
local hash = head[2] or string.rep('0', 64)
if seq ~= tonumber(ARGV[1]) or hash ~= ARGV[2] then
  return { 0, seq, hash }
end
-- checked before any write: a script error does not undo earlier writes
for i = 5, #ARGV, 3 do
  if tonumber(ARGV[i]) ~= seq + (i - 2) / 3 then
    return redis.error_reply('ERR audit seal: records out of sequence')
  end
end
local id = ''
for i = 5, #ARGV, 3 do
  id = redis.call('XADD', KEYS[2], '*', 'r', ARGV[i + 2])
  seq = seq + 1
  hash = ARGV[i + 1]
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'seq', seq, 'hash', hash, 'src', ARGV[3],
           'at', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'ord', ARGV[4])
else
  redis.call('HDEL', KEYS[1], 'ord')
end
return { 1, seq, id }
