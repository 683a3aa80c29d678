-- Routing: halts, imported listings, pond leads, repeat inquiries.

-- The lead a message attached to when it was not a new lead (repeat inquiry).
ALTER TABLE messages ADD COLUMN lead_id INTEGER REFERENCES leads(id);

-- Left in the pond for manual distribution.
ALTER TABLE leads ADD COLUMN unassigned INTEGER NOT NULL DEFAULT 0;
CREATE INDEX leads_contact_email ON leads(brokerage_id, contact_email);
CREATE INDEX leads_contact_phone ON leads(brokerage_id, contact_phone);

-- An admin's halt on an agent: in force while ended_at is NULL and until
-- (RFC 3339, NULL for open-ended) is in the future. Rows are never deleted:
-- they are the record of who halted whom, why, and who resumed them.
CREATE TABLE halts (
    id            INTEGER PRIMARY KEY,
    brokerage_id  TEXT NOT NULL REFERENCES brokerages(id),
    agent_id      TEXT NOT NULL,
    reason        TEXT NOT NULL,
    until         TEXT,
    by_agent      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    ended_at      TEXT,
    ended_by      TEXT
);
CREATE INDEX halts_open ON halts(brokerage_id, agent_id) WHERE ended_at IS NULL;

-- Listings imported with `leadmail listings import` (brokerages with many listings).
CREATE TABLE listings (
    id            INTEGER PRIMARY KEY,
    brokerage_id  TEXT NOT NULL REFERENCES brokerages(id),
    mls_number    TEXT,                    -- upper-cased
    address       TEXT,
    address_key   TEXT,                    -- route::address::key of address
    agent_id      TEXT NOT NULL,
    imported_at   TEXT NOT NULL
);
CREATE INDEX listings_mls ON listings(brokerage_id, mls_number);
CREATE INDEX listings_address ON listings(brokerage_id, address_key);
