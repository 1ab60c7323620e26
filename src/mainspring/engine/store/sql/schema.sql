-- Mainspring schema, SQLite dialect. Times are epoch milliseconds; JSON is stored as BLOB.

CREATE TABLE IF NOT EXISTS events (
    internal_id TEXT PRIMARY KEY,          -- engine ULID
    id          TEXT NOT NULL,             -- user idempotency key (or the internal id)
    name        TEXT NOT NULL,
    data        BLOB NOT NULL,
    ts          INTEGER NOT NULL,
    received_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_name ON events (name, internal_id);

CREATE TABLE IF NOT EXISTS runs (
    run_id          TEXT PRIMARY KEY,
    function_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL,         -- internal id of the first triggering event
    events          BLOB NOT NULL,         -- JSON list of the triggering events (wire shape)
    idempotency_key TEXT UNIQUE,
    status          TEXT NOT NULL,
    output          BLOB,
    error           BLOB,
    max_attempts    INTEGER NOT NULL,
    request_version INTEGER NOT NULL DEFAULT -1,
    force_step_plan INTEGER NOT NULL DEFAULT 0,
    coalesce_key    TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    ended_at        INTEGER,
    -- When the run passed its start gates (its batch or debounce closed, its throttle
    -- let it through); NULL while it waits for them. Runs without gates: created_at.
    admitted_at     INTEGER,
    -- The app version (Client(app_version=), a sync's appVersion) that started the run.
    app_version     TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_by_event ON runs (event_id);
-- Listings of runs (GET /v1/runs, the runs page), newest first within a function or a status.
CREATE INDEX IF NOT EXISTS runs_by_function ON runs (function_id, run_id);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, run_id);

-- The memo of every recorded step; seq is the save order (the run's stack).
CREATE TABLE IF NOT EXISTS steps (
    run_id     TEXT NOT NULL,
    step_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    memo       BLOB,
    user_id    TEXT NOT NULL,
    op         TEXT NOT NULL,
    attempt    INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER,                    -- when the attempt that produced it began
    ended_at   INTEGER NOT NULL,
    app_version TEXT,                      -- the app version that recorded it, if it has one
    -- A rerun's copy of a step another run executed (engine/rerun.py): that run's id. The
    -- times are that run's, so a copy keeps its duration; NULL for a step this run ran.
    copied_from TEXT,
    PRIMARY KEY (run_id, step_id)
) WITHOUT ROWID;

-- The parallel batch each step was first planned in (one response planning several steps,
-- protocol §7): which batch, and how many steps the run had recorded then. A rerun from a
-- member reuses its completed siblings (engine/rerun.py). Kept after the batch completes.
CREATE TABLE IF NOT EXISTS step_groups (
    run_id      TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    group_key   TEXT NOT NULL,         -- the batch's coalesce key (runs.coalesce_key)
    after_seq   INTEGER NOT NULL,      -- the highest seq of the run's steps when planned
    PRIMARY KEY (run_id, step_id)
) WITHOUT ROWID;

-- Attempts that failed and were retried: with steps, a run's full step history.
CREATE TABLE IF NOT EXISTS attempts (
    run_id     TEXT NOT NULL,
    step_id    TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    after_seq  INTEGER NOT NULL,           -- steps the run had recorded when it failed
    user_id    TEXT NOT NULL,
    op         TEXT NOT NULL,
    started_at INTEGER,
    ended_at   INTEGER NOT NULL,
    error      BLOB,
    PRIMARY KEY (run_id, step_id, attempt)
) WITHOUT ROWID;

-- Members of a run's in-flight parallel batch (protocol §6.1).
CREATE TABLE IF NOT EXISTS pending (
    run_id  TEXT NOT NULL,
    step_id TEXT NOT NULL,
    PRIMARY KEY (run_id, step_id)
) WITHOUT ROWID;

-- The durable queue. job_id is an idempotency key. Lease columns let several processes
-- share one queue (PostgreSQL); a single SQLite engine owns every job it loads.
CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    step_id     TEXT,
    run_at      INTEGER NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    priority    INTEGER NOT NULL DEFAULT 0,
    data        BLOB,                  -- kind-specific JSON (a sleep's step name and mode)
    lease_owner TEXT,
    lease_until INTEGER,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_by_run ON jobs (run_id);

-- Runs waiting for an event (wait_for_event, invoke, cancel conditions). A pause is
-- consumed by deleting it: whoever deletes it first (a matching event or the timeout) wins.
CREATE TABLE IF NOT EXISTS pauses (
    pause_id    TEXT PRIMARY KEY,      -- "{run_id}:{step_id}"
    run_id      TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,         -- wait | invoke | cancel
    event_name  TEXT NOT NULL,
    expression  TEXT,                  -- CEL with the triggering event substituted
    match_path  TEXT,                  -- for `async.<path> == <literal>`: the path ...
    match_value TEXT,                  -- ... and the literal as canonical JSON
    expires_at  INTEGER NOT NULL,
    data        BLOB,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pauses_by_event ON pauses (event_name, match_path, match_value);
CREATE INDEX IF NOT EXISTS pauses_by_run ON pauses (run_id);

-- Apps synced over HTTP (POST /fn/register), as they registered: a restarted server
-- serves them (and keeps their cron schedules) before they sync again.
CREATE TABLE IF NOT EXISTS apps (
    name        TEXT PRIMARY KEY,
    body        BLOB NOT NULL,
    synced_at   INTEGER NOT NULL
) WITHOUT ROWID;

-- Flow control (engine/flow). GCRA cells of throttles, rate limits and idempotency keys:
-- the theoretical arrival time of the next run for one key.
CREATE TABLE IF NOT EXISTS flow_cells (
    key         TEXT PRIMARY KEY,      -- "{control}:{function id}:{evaluated key}"
    tat         INTEGER NOT NULL,
    run_id      TEXT,                  -- the run that last went through (for skip reasons)
    expires_at  INTEGER NOT NULL       -- past it, the cell is as good as absent
) WITHOUT ROWID;

-- One run per (kind, key): an open batch, a pending debounce, a singleton's holder.
-- Released by closing it (the run starts) or when the run finishes.
CREATE TABLE IF NOT EXISTS flow_holds (
    kind        TEXT NOT NULL,         -- batch | debounce | singleton
    key         TEXT NOT NULL,         -- "{function id}:{evaluated key}"
    run_id      TEXT NOT NULL,
    since       INTEGER NOT NULL,      -- first event of a batch or debounce; a holder's start
    size        INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS flow_holds_by_run ON flow_holds (run_id);

-- Every event of a batch run, in order (runs.event_id is the first): an event's runs
-- include the batch it went into, and an event id joins at most one batch per function.
CREATE TABLE IF NOT EXISTS run_events (
    dedupe_key  TEXT PRIMARY KEY,      -- "{function id}:{event id}"
    event_id    TEXT NOT NULL,         -- internal id
    run_id      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS run_events_by_event ON run_events (event_id);

-- Runs held because their function is not registered (a deploy dropped it): engine/held.py.
-- The run's call jobs wait in `jobs` with run_at = until, the end of its grace period; a
-- sync or a start that brings the function back moves them to now and deletes the row.
CREATE TABLE IF NOT EXISTS held_runs (
    run_id      TEXT PRIMARY KEY,
    function_id TEXT NOT NULL,
    app         TEXT NOT NULL,         -- the app that last served the function
    since       INTEGER NOT NULL,      -- when the run first found it missing
    until       INTEGER NOT NULL       -- since + the grace period: the run fails then
) WITHOUT ROWID;

-- The app that last synced each function (POST /fn/register), kept after a sync drops the
-- function: a run held for it names the app it belonged to.
CREATE TABLE IF NOT EXISTS function_apps (
    function_id TEXT PRIMARY KEY,
    app         TEXT NOT NULL,
    synced_at   INTEGER NOT NULL
) WITHOUT ROWID;

-- Runs started by a rerun (engine/rerun.py): the run they rerun and the step they were
-- rerun from (NULL: from the start); the steps before it were copied from that run.
CREATE TABLE IF NOT EXISTS reruns (
    run_id      TEXT PRIMARY KEY,      -- the new run
    original_id TEXT NOT NULL,         -- the run it reruns
    from_step   TEXT,                  -- as the caller named it (a step's id or hashed id)
    copied      INTEGER NOT NULL,      -- how many recorded steps were copied in
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reruns_by_original ON reruns (original_id);
