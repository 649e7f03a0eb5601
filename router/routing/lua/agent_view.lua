-- An agent desktop's view in one call: the agent hash, then each contact the
-- agent holds that is still offered (not yet accepted). Read-only and without
-- the routing library: a push to a WebSocket or a long-poll answer costs one
-- EVALSHA in the replica's script pipeline instead of three round trips.
--
-- KEYS[1] is the agent hash `{ws:<name>}:a:<id>`; contact keys are built from
-- its hash tag (same Cluster slot, names as in router/store/keys.py).
-- Returns {} when the agent does not exist, else {agent_pairs, contact_pairs...}.
--
-- A held contact's state is read alone first: most held contacts are already
-- accepted (chats in progress, wrap-ups), and a whole record costs Redis about
-- ten times one field. The offered ones are read whole: the reply is the
-- record, as every other contact read returns it (router/routing/records.py
-- contact_out), and naming the ~30 fields it reads costs more than the ~10 it
-- does not.
local a = redis.call('HGETALL', KEYS[1])
if #a == 0 then return {} end
local close = string.find(KEYS[1], '}', 1, true)
local prefix = string.sub(KEYS[1], 1, close) .. ':c:'
local out = {a}
for i = 1, #a, 2 do
  local f = a[i]
  if string.sub(f, 1, 2) == 'h:' then
    local key = prefix .. string.sub(f, 3)
    if redis.call('HGET', key, 'st') == 'offered' then
      out[#out + 1] = redis.call('HGETALL', key)
    end
  end
end
return out
