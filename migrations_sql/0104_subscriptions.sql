-- Subscriptions (spec/30 section 6): owned by an identity, path globs + event types. Polling
-- subscriptions buffer event references until acknowledged; webhook ones push through a
-- webhooks row they own.
CREATE TABLE subscriptions (
    id              text PRIMARY KEY,
    tenant_id       text NOT NULL,
    partner_id      text,
    owner_principal text NOT NULL,          -- "<tenant>/<sub>" of the owner: what ownership is keyed on
    identity_id     text NOT NULL,          -- the owner's policy-binding name (user:..., sa:...)
    identity_type   text NOT NULL,
    name            text NOT NULL,
    paths           jsonb NOT NULL,
    events          jsonb NOT NULL,
    filters         jsonb NOT NULL DEFAULT '{}'::jsonb,
    delivery_type   text NOT NULL,
    webhook_id      text REFERENCES webhooks (id) ON DELETE SET NULL,
    buffer_size     integer NOT NULL DEFAULT 1000,
    status          text NOT NULL DEFAULT 'active',
    dropped_events  bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_tenant ON subscriptions (tenant_id, id);
CREATE INDEX subscriptions_owner ON subscriptions (owner_principal, id);

CREATE TABLE subscription_events (
    subscription_id  text NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_seq        bigint NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    delivered_count  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (subscription_id, event_seq)
);
