-- Outbound webhooks (spec/30 section 5). Signing secrets are sealed under the tenant key
-- (kind webhook_secret, object id = webhook id, version = secret_version); the previous secret
-- is kept sealed until previous_secret_expires_at. A webhook owned by a subscription
-- (subscription_id set) is its push channel and is not listed under /v1/webhooks.
CREATE TABLE webhooks (
    id                          text PRIMARY KEY,
    tenant_id                   text NOT NULL,
    partner_id                  text NOT NULL DEFAULT '',
    name                        text NOT NULL,
    url                         text NOT NULL,
    sealed_secret               bytea NOT NULL,
    secret_version              integer NOT NULL DEFAULT 1,
    sealed_previous_secret      bytea,
    previous_secret_version     integer,
    previous_secret_expires_at  timestamptz,
    events                      jsonb NOT NULL,
    filters                     jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled                     boolean NOT NULL DEFAULT true,
    status                      text NOT NULL DEFAULT 'healthy',
    consecutive_failures        integer NOT NULL DEFAULT 0,
    failing_since               timestamptz,
    disabled_reason             text,
    subscription_id             text,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    created_by                  text,
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, id);

-- One row per (event, webhook) delivery, updated by every attempt; a redelivery is a new row.
CREATE TABLE webhook_deliveries (
    id                  text PRIMARY KEY,
    webhook_id          text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    tenant_id           text NOT NULL,
    event_seq           bigint NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    event_id            text NOT NULL,
    event_type          text NOT NULL,
    status              text NOT NULL DEFAULT 'pending',
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    locked_until        timestamptz,
    response_code       integer,
    error               text,
    duration_ms         integer,
    redelivery_of       text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_attempt_at     timestamptz,
    completed_at        timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, created_at DESC, id);
