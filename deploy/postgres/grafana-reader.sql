-- Run once by the postgres image when the archive's volume is new: a role for
-- Grafana that may read what the routers write and nothing more. The tables do
-- not exist yet (the routers create them at start, as `router`), so SELECT is
-- granted by default on every table `router` creates.
CREATE ROLE grafana_reader LOGIN PASSWORD 'grafana-demo';
GRANT CONNECT ON DATABASE router TO grafana_reader;
GRANT USAGE ON SCHEMA public TO grafana_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE router IN SCHEMA public GRANT SELECT ON TABLES TO grafana_reader;
