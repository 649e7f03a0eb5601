-- Agent state intervals keyed by the event that closed them, not by their start
-- alone. A state that lasted under a millisecond (two changes in the same Redis
-- millisecond: an integration setting a state right after creating the agent,
-- a double click) ends where the next one starts, and under the key
-- (ws, agent, started) the next interval, the one with the time in it, was
-- dropped by ON CONFLICT DO NOTHING. `event` is the Redis stream id of the
-- `agent.state_changed` event that closed the interval, unique in the
-- workspace's stream, so a batch written twice still adds nothing.
ALTER TABLE agent_state_intervals ADD COLUMN event text NOT NULL DEFAULT '';
-- Rows written before: their closing event, when the archive still holds it (a
-- batch written before this migration and written again after it then adds
-- nothing); else '' (those rows were unique by their start already).
UPDATE agent_state_intervals i SET event = e.id
FROM events e
WHERE e.ws = i.ws
    AND e.type = 'agent.state_changed'
    AND e.doc ->> 'agent' = i.agent
    AND e.doc -> 'previous_since' = to_jsonb(round(extract(EPOCH FROM i.started) * 1000))
    AND e.doc -> 'at' = to_jsonb(round(extract(EPOCH FROM i.ended) * 1000));
ALTER TABLE agent_state_intervals ALTER COLUMN event DROP DEFAULT;
ALTER TABLE agent_state_intervals
    DROP CONSTRAINT agent_state_intervals_pkey,
    ADD PRIMARY KEY (ws, agent, started, event);
