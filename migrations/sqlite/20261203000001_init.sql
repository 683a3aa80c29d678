-- Directory, mirrored from the configuration at start-up.
CREATE TABLE brokerages (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE agents (
    brokerage_id  TEXT NOT NULL REFERENCES brokerages(id),
    id            TEXT NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    emails        TEXT NOT NULL,           -- JSON array of lower-cased addresses
    active        INTEGER NOT NULL DEFAULT 1,  -- 0 once removed from the configuration
    PRIMARY KEY (brokerage_id, id)
);

-- Every message ever received, whatever became of it, with its raw bytes so
-- that any lead or quarantined message can be processed again.
CREATE TABLE messages (
    id             INTEGER PRIMARY KEY,
    brokerage_key  TEXT NOT NULL,           -- brokerage id, or '' when none matched
    dedupe_key     TEXT NOT NULL,           -- 'mid:<Message-ID>' or 'sha256:<hex>'
    sha256         TEXT NOT NULL,
    message_id     TEXT,
    origin         TEXT NOT NULL,           -- where it was read from
    received_at    TEXT NOT NULL,
    outcome        TEXT NOT NULL,           -- created | ignored | quarantined
    reason         TEXT,
    raw            BLOB NOT NULL,
    UNIQUE (brokerage_key, dedupe_key)
);
CREATE INDEX messages_outcome ON messages(outcome);

CREATE TABLE leads (
    id                INTEGER PRIMARY KEY,
    brokerage_id      TEXT NOT NULL REFERENCES brokerages(id),
    message_row       INTEGER NOT NULL UNIQUE REFERENCES messages(id),
    kind              TEXT NOT NULL,        -- direct | general
    owner_id          TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    rule              TEXT,
    reason            TEXT NOT NULL,
    source            TEXT NOT NULL,
    lead_type         TEXT,
    contact_name      TEXT,
    contact_email     TEXT,
    contact_phone     TEXT,
    property_address  TEXT,
    mls_number        TEXT,
    price             INTEGER,
    property_url      TEXT,
    message           TEXT,
    forwarded_by      TEXT,
    agent_hint_name   TEXT,
    agent_hint_email  TEXT,
    subject           TEXT,
    trace             TEXT NOT NULL,        -- JSON: the routing decision as made
    created_at        TEXT NOT NULL,
    FOREIGN KEY (brokerage_id, owner_id) REFERENCES agents(brokerage_id, id),
    FOREIGN KEY (brokerage_id, user_id) REFERENCES agents(brokerage_id, id)
);
CREATE INDEX leads_brokerage ON leads(brokerage_id, id);

-- History: every change of a lead, with who, when and why.
CREATE TABLE lead_events (
    id          INTEGER PRIMARY KEY,
    lead_id     INTEGER NOT NULL REFERENCES leads(id),
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,              -- created | routed | owner_changed | user_changed | ...
    actor       TEXT NOT NULL,              -- 'leadmail' or an agent id
    from_agent  TEXT,
    to_agent    TEXT,
    note        TEXT
);
CREATE INDEX lead_events_lead ON lead_events(lead_id, id);

-- Round-robin positions, advanced in the transaction that inserts the lead.
CREATE TABLE round_robin_cursors (
    brokerage_id  TEXT NOT NULL REFERENCES brokerages(id),
    pool          TEXT NOT NULL,
    position      INTEGER NOT NULL,
    PRIMARY KEY (brokerage_id, pool)
);
