-- Token exchange (issue 13): trust rules for foreign OIDC issuers, and the short-lived
-- ScaiVault tokens minted from them (stored as a SHA-256 hash only).

CREATE TABLE trust_rules (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL,
    partner_id  text,
    name        text NOT NULL,
    issuer      text NOT NULL,
    jwks_url    text,
    audience    text NOT NULL,
    conditions  jsonb NOT NULL DEFAULT '{}'::jsonb,
    identity    text NOT NULL,                 -- sa:<name> in the rule's tenant
    max_scopes  jsonb NOT NULL,
    ttl         integer NOT NULL DEFAULT 3600,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text,
    CONSTRAINT trust_rules_name UNIQUE (tenant_id, name)
);
CREATE INDEX trust_rules_issuer ON trust_rules (issuer);

CREATE TABLE exchanged_tokens (
    id              text PRIMARY KEY,
    token_hash      bytea NOT NULL UNIQUE,
    rule_id         text NOT NULL REFERENCES trust_rules (id) ON DELETE CASCADE,
    tenant_id       text NOT NULL,
    partner_id      text,
    identity_id     text NOT NULL,
    foreign_issuer  text NOT NULL,
    foreign_subject text NOT NULL,
    scopes          jsonb NOT NULL,
    issued_at       timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX exchanged_tokens_expiry ON exchanged_tokens (expires_at);
