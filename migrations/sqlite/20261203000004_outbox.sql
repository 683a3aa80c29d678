-- The notification outbox: rows are written in the transaction that stores
-- the lead, then sent by the sender task and marked. The Message-ID is
-- deterministic per notification and unique, so one notification is never
-- queued twice, and a resend after a crash is recognisable.
CREATE TABLE notifications (
    id               INTEGER PRIMARY KEY,
    brokerage_id     TEXT NOT NULL,
    lead_id          INTEGER REFERENCES leads(id),
    kind             TEXT NOT NULL,          -- lead | repeat | digest | test
    agent_id         TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    reply_to         TEXT,
    subject          TEXT NOT NULL,
    body_text        TEXT NOT NULL,
    body_html        TEXT NOT NULL,
    message_id       TEXT NOT NULL UNIQUE,
    status           TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    sent_at          TEXT
);
CREATE INDEX notifications_due ON notifications(status, next_attempt_at);

-- Where each brokerage's quarantine digest got to.
CREATE TABLE quarantine_digests (
    brokerage_id      TEXT PRIMARY KEY,
    last_message_row  INTEGER NOT NULL,
    last_sent_at      TEXT NOT NULL
);
