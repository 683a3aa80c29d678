-- What `leadmail run` reports about each inbox, for `leadmail status`.
CREATE TABLE inbox_status (
    brokerage_id     TEXT PRIMARY KEY,
    connected        INTEGER NOT NULL DEFAULT 0,
    last_success     TEXT,                  -- last time the inbox was read to the end
    processed        INTEGER NOT NULL DEFAULT 0,
    oldest_waiting   TEXT,                  -- arrival of the oldest message not yet acknowledged
    last_error       TEXT,
    last_error_at    TEXT,
    updated_at       TEXT NOT NULL
);
