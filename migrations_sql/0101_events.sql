-- The event outbox (spec/30 section 4): one row per event, inserted in the transaction of the
-- change that causes it, so an event exists if and only if its change committed. `body` is the
-- serialised envelope, signed and sent byte for byte on every attempt. The dispatcher fans
-- undispatched rows out to webhook deliveries and subscription buffers.
CREATE TABLE events (
    seq            bigserial PRIMARY KEY,
    id             text NOT NULL UNIQUE,
    tenant_id      text,
    partner_id     text,
    event_type     text NOT NULL,
    path           text,
    body           text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    dispatched_at  timestamptz
);
CREATE INDEX events_undispatched ON events (seq) WHERE dispatched_at IS NULL;
CREATE INDEX events_tenant ON events (tenant_id, seq);
CREATE INDEX events_created ON events (created_at);
