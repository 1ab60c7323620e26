-- What many engine processes sharing the database need.
--
-- The match paths the pauses of each event name use, so that an event's intake looks up
-- only the pauses its values could resume (one indexed probe per path). SQLite's store
-- keeps this set in memory; here other processes create pauses too, so it is a table that
-- every process reads. It only grows: a path no pause uses any more costs one empty probe.
CREATE TABLE pause_paths (
    event_name TEXT COLLATE "C" NOT NULL,
    -- '' stands for pauses without an index (evaluated on every event of the name).
    match_path TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (event_name, match_path)
);
INSERT INTO pause_paths (event_name, match_path)
    SELECT DISTINCT event_name, coalesce(match_path, '') FROM pauses;

-- The queue's claims (engine/claims.py): the soonest job nobody holds, the leases a process
-- renews, and the soonest lease to run out, each read from an index of its own.
CREATE INDEX jobs_unleased ON jobs (run_at) WHERE lease_owner IS NULL;
CREATE INDEX jobs_by_lease_owner ON jobs (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX jobs_by_lease_end ON jobs (lease_until) WHERE lease_owner IS NOT NULL;
