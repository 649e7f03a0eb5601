-- Agents' time in each state: one row per state an agent left, written by the
-- event archiver from `agent.state_changed` events (router/archive/agent_states.py),
-- which carry the state left, its reason and since when it lasted. Keyed by the
-- interval's start, so a batch written twice adds nothing. Not partitioned:
-- a few rows per agent and day.
CREATE TABLE agent_state_intervals (
    ws text NOT NULL,
    agent text NOT NULL,
    team text,
    state text NOT NULL,
    -- the not-ready reason code (or text) of a break; NULL for other states
    reason text,
    started timestamptz NOT NULL,
    ended timestamptz NOT NULL,
    seconds double precision NOT NULL,
    PRIMARY KEY (ws, agent, started)
);
CREATE INDEX agent_state_intervals_by_end ON agent_state_intervals (ws, ended);
GRANT SELECT, INSERT ON agent_state_intervals TO router_archive_writer;
