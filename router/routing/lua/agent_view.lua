-- An agent desktop's view in one call, read-only: the agent's pairs, then each
-- contact it holds that is still offered (not yet accepted), whole, as every
-- contact read returns it (router/routing/records.py contact_out). The same
-- view goes out with every notification for the agent when a routing call
-- ends (lib/20_events.lua agent_view_pairs, publish_views); this call is for a
-- desktop's first view and for the views missed while a replica resubscribes.
-- KEYS: [1] runtime hash, [2] agent hash   ARGV: [1] agent id
-- Returns {} when the agent does not exist, else {agent_pairs, contact_pairs...}.
return agent_view_pairs(ARGV[1]) or {}
