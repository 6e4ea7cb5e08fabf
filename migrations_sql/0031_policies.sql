-- Access policies (rules as validated JSON) and their bindings to identities and groups.
-- tenant_id NULL = a partner-scope policy, applying in every tenant of partner_id.
CREATE TABLE policies (
    id           text PRIMARY KEY,
    partner_id   text NOT NULL,
    tenant_id    text,
    scope        text NOT NULL CHECK (scope IN ('tenant', 'partner')),
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    rules        jsonb NOT NULL,
    is_active    boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text,
    CHECK ((scope = 'tenant') = (tenant_id IS NOT NULL))
);
CREATE UNIQUE INDEX policies_tenant_name ON policies (tenant_id, name) WHERE tenant_id IS NOT NULL;
CREATE UNIQUE INDEX policies_partner_name ON policies (partner_id, name) WHERE tenant_id IS NULL;
CREATE INDEX policies_partner ON policies (partner_id, id);

CREATE TABLE policy_bindings (
    id             text PRIMARY KEY,
    policy_id      text NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
    identity_type  text NOT NULL CHECK (identity_type IN ('user', 'service_account', 'group')),
    identity_id    text NOT NULL,
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text,
    CONSTRAINT policy_bindings_once UNIQUE (policy_id, identity_id)
);
CREATE INDEX policy_bindings_identity ON policy_bindings (identity_id, policy_id);
