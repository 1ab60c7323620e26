-- Mainspring schema, PostgreSQL dialect: the tables and indexes of sql/schema.sql (with
-- the columns sqlite.py's _migrate adds), for many engine processes sharing one database.
-- Comments on what each table holds are in schema.sql; here only what differs.
--
-- Times are epoch milliseconds (BIGINT), as in SQLite, so the store's code and its records
-- stay the same on both backends.
-- JSON values are BYTEA holding the bytes orjson wrote, not JSONB: JSONB would reorder keys,
-- drop duplicate ones and refuse "\u0000" in strings that user data may carry, and parsing
-- every memo on write costs time for nothing (the engine never queries inside them).
-- Text is COLLATE "C": SQLite compares bytes, and the engine's orderings (ULIDs, step ids,
-- function ids in listings) and prefix matches must not change with the server's locale;
-- using it on every text column also keeps joins free of mixed-collation errors.
-- Statements are plain CREATEs: the runner applies this file once, in one transaction.

CREATE TABLE events (
    internal_id TEXT COLLATE "C" PRIMARY KEY,
    id          TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    data        BYTEA NOT NULL,
    ts          BIGINT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX events_by_name ON events (name, internal_id);

CREATE TABLE runs (
    run_id          TEXT COLLATE "C" PRIMARY KEY,
    function_id     TEXT COLLATE "C" NOT NULL,
    event_id        TEXT COLLATE "C" NOT NULL,
    events          BYTEA NOT NULL,
    idempotency_key TEXT COLLATE "C",
    status          TEXT COLLATE "C" NOT NULL,
    output          BYTEA,
    error           BYTEA,
    max_attempts    INTEGER NOT NULL,
    request_version INTEGER NOT NULL DEFAULT -1,
    force_step_plan BOOLEAN NOT NULL DEFAULT FALSE,
    coalesce_key    TEXT COLLATE "C",
    created_at      BIGINT NOT NULL,
    started_at      BIGINT,
    ended_at        BIGINT,
    admitted_at     BIGINT,
    app_version     TEXT COLLATE "C",
    -- Named like SQLite's autoindex so both schemas read the same in a description.
    CONSTRAINT runs_idempotency_key UNIQUE (idempotency_key)
);
CREATE INDEX runs_by_event ON runs (event_id);
CREATE INDEX runs_by_function ON runs (function_id, run_id);
CREATE INDEX runs_by_status ON runs (status, run_id);

CREATE TABLE steps (
    run_id      TEXT COLLATE "C" NOT NULL,
    step_id     TEXT COLLATE "C" NOT NULL,
    seq         INTEGER NOT NULL,
    memo        BYTEA,
    user_id     TEXT COLLATE "C" NOT NULL,
    op          TEXT COLLATE "C" NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    started_at  BIGINT,
    ended_at    BIGINT NOT NULL,
    app_version TEXT COLLATE "C",
    copied_from TEXT COLLATE "C",
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE step_groups (
    run_id    TEXT COLLATE "C" NOT NULL,
    step_id   TEXT COLLATE "C" NOT NULL,
    group_key TEXT COLLATE "C" NOT NULL,
    after_seq INTEGER NOT NULL,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE attempts (
    run_id     TEXT COLLATE "C" NOT NULL,
    step_id    TEXT COLLATE "C" NOT NULL,
    attempt    INTEGER NOT NULL,
    after_seq  INTEGER NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    op         TEXT COLLATE "C" NOT NULL,
    started_at BIGINT,
    ended_at   BIGINT NOT NULL,
    error      BYTEA,
    PRIMARY KEY (run_id, step_id, attempt)
);

CREATE TABLE pending (
    run_id  TEXT COLLATE "C" NOT NULL,
    step_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (run_id, step_id)
);

-- The shared queue. A process claims due jobs nobody holds (run_at <= now and lease_until
-- NULL or past) with FOR UPDATE SKIP LOCKED, writing its id and an expiry; a process that
-- dies loses its leases when they expire and another claims the jobs.
CREATE TABLE jobs (
    job_id      TEXT COLLATE "C" PRIMARY KEY,
    run_id      TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    step_id     TEXT COLLATE "C",
    run_at      BIGINT NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    -- Flow control's priority offsets are milliseconds: wider than INTEGER to be safe.
    priority    BIGINT NOT NULL DEFAULT 0,
    data        BYTEA,
    lease_owner TEXT COLLATE "C",
    lease_until BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX jobs_by_run ON jobs (run_id);
-- The claim's scan: due jobs in due order, their lease read from the index itself.
CREATE INDEX jobs_due ON jobs (run_at, lease_until);

CREATE TABLE pauses (
    pause_id    TEXT COLLATE "C" PRIMARY KEY,
    run_id      TEXT COLLATE "C" NOT NULL,
    step_id     TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    event_name  TEXT COLLATE "C" NOT NULL,
    expression  TEXT COLLATE "C",
    match_path  TEXT COLLATE "C",
    match_value TEXT COLLATE "C",
    expires_at  BIGINT NOT NULL,
    data        BYTEA,
    created_at  BIGINT NOT NULL
);
CREATE INDEX pauses_by_event ON pauses (event_name, match_path, match_value);
CREATE INDEX pauses_by_run ON pauses (run_id);

CREATE TABLE apps (
    name      TEXT COLLATE "C" PRIMARY KEY,
    body      BYTEA NOT NULL,
    synced_at BIGINT NOT NULL
);

CREATE TABLE flow_cells (
    key        TEXT COLLATE "C" PRIMARY KEY,
    tat        BIGINT NOT NULL,
    run_id     TEXT COLLATE "C",
    expires_at BIGINT NOT NULL
);

CREATE TABLE flow_holds (
    kind   TEXT COLLATE "C" NOT NULL,
    key    TEXT COLLATE "C" NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    since  BIGINT NOT NULL,
    size   INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (kind, key)
);
CREATE INDEX flow_holds_by_run ON flow_holds (run_id);

CREATE TABLE run_events (
    dedupe_key TEXT COLLATE "C" PRIMARY KEY,
    event_id   TEXT COLLATE "C" NOT NULL,
    run_id     TEXT COLLATE "C" NOT NULL
);
CREATE INDEX run_events_by_event ON run_events (event_id);

CREATE TABLE held_runs (
    run_id      TEXT COLLATE "C" PRIMARY KEY,
    function_id TEXT COLLATE "C" NOT NULL,
    app         TEXT COLLATE "C" NOT NULL,
    since       BIGINT NOT NULL,
    until       BIGINT NOT NULL
);

CREATE TABLE function_apps (
    function_id TEXT COLLATE "C" PRIMARY KEY,
    app         TEXT COLLATE "C" NOT NULL,
    synced_at   BIGINT NOT NULL
);

CREATE TABLE reruns (
    run_id      TEXT COLLATE "C" PRIMARY KEY,
    original_id TEXT COLLATE "C" NOT NULL,
    from_step   TEXT COLLATE "C",
    copied      INTEGER NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX reruns_by_original ON reruns (original_id);
