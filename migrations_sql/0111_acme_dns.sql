-- Issue 12: ACME accounts and orders (ScaiVault as an RFC 8555 client), pending http-01
-- answers, and DNS providers for dns-01. Account keys and provider credentials are sealed.
CREATE TABLE dns_providers (
    id                  text PRIMARY KEY,
    partner_id          text NOT NULL,
    tenant_id           text NOT NULL,
    name                text NOT NULL,
    provider_type       text NOT NULL,
    managed_zones       jsonb NOT NULL,
    config              jsonb NOT NULL DEFAULT '{}'::jsonb,   -- non-secret settings (server, port, ...)
    sealed_credentials  bytea NOT NULL,
    is_active           boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX dns_providers_tenant_name ON dns_providers (tenant_id, name);

CREATE TABLE acme_accounts (
    id              text PRIMARY KEY,
    partner_id      text NOT NULL,
    tenant_id       text NOT NULL,
    name            text NOT NULL,
    provider        text NOT NULL,
    environment     text NOT NULL,
    email           text,
    directory_url   text NOT NULL,
    account_url     text,
    eab_kid         text,
    sealed_key      bytea NOT NULL,
    status          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text
);
CREATE UNIQUE INDEX acme_accounts_tenant_name ON acme_accounts (tenant_id, name);

CREATE TABLE acme_orders (
    id               text PRIMARY KEY,
    partner_id       text NOT NULL,
    tenant_id        text NOT NULL,
    account_id       text NOT NULL REFERENCES acme_accounts (id),
    domains          jsonb NOT NULL,
    challenge        text NOT NULL,
    dns_provider_id  text REFERENCES dns_providers (id),
    secret_path      text NOT NULL,
    key_type         text NOT NULL,
    auto_renew       boolean NOT NULL DEFAULT false,
    status           text NOT NULL,               -- pending | processing | valid | invalid
    stage            text,                        -- what the runner is doing now (for humans)
    error            text,
    order_url        text,
    serial_number    text,
    not_before       timestamptz,
    not_after        timestamptz,
    renewed_from     text,
    renewed_by       text,
    runner           text,
    heartbeat_at     timestamptz,
    attempts         integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz
);
CREATE INDEX acme_orders_tenant ON acme_orders (tenant_id, id);
CREATE INDEX acme_orders_open ON acme_orders (heartbeat_at) WHERE status IN ('pending', 'processing');
CREATE INDEX acme_orders_renewal ON acme_orders (not_after) WHERE auto_renew AND status = 'valid' AND renewed_by IS NULL;

-- http-01 answers: public by design (token and key authorization travel in clear over HTTP)
CREATE TABLE acme_http_challenges (
    token              text PRIMARY KEY,
    key_authorization  text NOT NULL,
    order_id           text NOT NULL REFERENCES acme_orders (id) ON DELETE CASCADE,
    expires_at         timestamptz NOT NULL
);
