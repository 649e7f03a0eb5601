-- Bot hand-offs (router/routing/handoff.py) ---------------------------------

-- Counted in the event counts hash under the labels fixed at creation (`hbl`,
-- `hil`: names the config knows, else 'other'), so client text never becomes
-- an unbounded metric label.
local function handoff_created(c)
  if not c.hbot or c.hbot == '' then return end
  redis.call('HINCRBY', K_COUNTS, 'handoff|' .. c.hbl .. '|' .. c.hil, 1)
end

-- The contact's real intent as its agent found it (the disposition); for a
-- hand-off, whether the bot's intent was right. Not personal: a config name.
local function set_disposition(c, intent)
  if intent == nil or intent == '' then return end
  local before = c.aint
  c.aint = intent
  redis.call('HSET', kc(c.id), 'aint', intent)
  local ev = { type = 'contact.disposition', contact = c.id, agent = c.agent, pool = c.pool,
               state = c.st, intent = intent }
  if before and before ~= '' then ev.previous = before end
  if c.hbot and c.hbot ~= '' then
    ev.bot_intent = c.hint or ''
    ev.changed = intent ~= (c.hint or '')
  end
  record(ev)
end

-- A served hand-off ends: counted as changed when its agent gave an intent
-- other than the bot's (the share of hand-offs whose intent was wrong).
local function handoff_outcome(c)
  if not c.hbot or c.hbot == '' then return end
  local changed = c.aint and c.aint ~= '' and c.aint ~= (c.hint or '')
  redis.call('HINCRBY', K_COUNTS, 'handoff_done|' .. c.hbl .. '|' .. c.hil .. '|' ..
             (changed and '1' or '0'), 1)
end
