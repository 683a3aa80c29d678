-- What `leadmail run` reports about each inbox, for `leadmail status`.
CREATE TABLE inbox_status (
    brokerage_id     TEXT COLLATE "C" PRIMARY KEY,
    connected        BIGINT NOT NULL DEFAULT 0,
    last_success     TEXT COLLATE "C",                  -- last time the inbox was read to the end
    processed        BIGINT NOT NULL DEFAULT 0,
    oldest_waiting   TEXT COLLATE "C",                  -- arrival of the oldest message not yet acknowledged
    last_error       TEXT COLLATE "C",
    last_error_at    TEXT COLLATE "C",
    updated_at       TEXT COLLATE "C" NOT NULL
);
