-- Lead offers: a general lead (or a direct one, with direct_auto_accept off)
-- offered to agents who accept or decline within an acceptance period.
-- While offered, the default owner holds the lead and it has no user.
ALTER TABLE leads ADD COLUMN status TEXT NOT NULL DEFAULT 'assigned';  -- assigned | offered
ALTER TABLE leads ADD COLUMN offer_plan TEXT;                          -- JSON OfferPlan, when offered
ALTER TABLE leads ADD COLUMN referral_fee_percent INTEGER;             -- set when settled

CREATE TABLE offers (
    id            INTEGER PRIMARY KEY,
    lead_id       INTEGER NOT NULL REFERENCES leads(id),
    brokerage_id  TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'open',  -- open | accepted | declined | expired | taken
    offered_at    TEXT NOT NULL,
    deadline      TEXT NOT NULL,
    decided_at    TEXT,
    decided_by    TEXT
);
CREATE INDEX offers_open ON offers(state, deadline);
CREATE INDEX offers_lead ON offers(lead_id);

-- An agent's own out-of-office (distinct from an admin's halt).
CREATE TABLE aways (
    brokerage_id  TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    delegate      TEXT,
    until         TEXT,
    since         TEXT NOT NULL,
    by            TEXT NOT NULL,
    PRIMARY KEY (brokerage_id, agent_id)
);
