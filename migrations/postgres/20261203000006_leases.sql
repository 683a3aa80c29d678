-- Inbox leases: each inbox is worked by one `leadmail run` at a time. The
-- holder renews its lease; when it dies, another instance takes the inbox
-- over once the lease has expired.
CREATE TABLE inbox_leases (
    brokerage_id  TEXT COLLATE "C" PRIMARY KEY,
    holder        TEXT COLLATE "C" NOT NULL,
    acquired_at   TEXT COLLATE "C" NOT NULL,
    expires_at    TEXT COLLATE "C" NOT NULL
);
