-- Dynamic database credentials (issue 13): engines, roles and leases.
-- Root credentials are never stored here: an engine names the secret that holds them.

-- policy bindings may name a dynamic engine's identity (dynamic:<engine>)
ALTER TABLE policy_bindings DROP CONSTRAINT IF EXISTS policy_bindings_identity_type_check;
ALTER TABLE policy_bindings ADD CONSTRAINT policy_bindings_identity_type_check
    CHECK (identity_type IN ('user', 'service_account', 'group', 'dynamic_engine'));

CREATE TABLE dynamic_engines (
    id                    text PRIMARY KEY,
    tenant_id             text NOT NULL,
    partner_id            text,
    name                  text NOT NULL,
    type                  text NOT NULL,
    plugin                text NOT NULL,
    connection_url        text NOT NULL,          -- a template: {{username}} / {{password}}, never a password
    root_credentials_path text NOT NULL,
    options               jsonb NOT NULL DEFAULT '{}'::jsonb,
    default_ttl           integer NOT NULL,
    max_ttl               integer NOT NULL,
    health_status         text NOT NULL DEFAULT 'unknown',
    health_checked_at     timestamptz,
    health_error          text,
    root_rotated_at       timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    created_by            text,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    updated_by            text,
    CONSTRAINT dynamic_engines_name UNIQUE (tenant_id, name)
);

CREATE TABLE dynamic_roles (
    engine_id              text NOT NULL REFERENCES dynamic_engines (id) ON DELETE CASCADE,
    name                   text NOT NULL,
    creation_statements    jsonb NOT NULL,
    revocation_statements  jsonb NOT NULL DEFAULT '[]'::jsonb,
    renew_statements       jsonb NOT NULL DEFAULT '[]'::jsonb,
    default_ttl            integer,
    max_ttl                integer,
    created_at             timestamptz NOT NULL DEFAULT now(),
    created_by             text,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    updated_by             text,
    PRIMARY KEY (engine_id, name)
);

-- One row per issued credential. The password is returned once and never stored; the
-- revocation needs only the user name. Revoked rows stay as history.
CREATE TABLE dynamic_leases (
    id               text PRIMARY KEY,             -- <engine>/<role>/<random>
    tenant_id        text NOT NULL,
    partner_id       text,
    engine_id        text NOT NULL REFERENCES dynamic_engines (id) ON DELETE CASCADE,
    engine_name      text NOT NULL,
    role_name        text NOT NULL,
    identity_id      text NOT NULL,                -- the caller's policy name (user:<email> / sa:<name>)
    owner_principal  text NOT NULL,                -- who owns it: <tenant>/<sub>, immutable (design invariant 10)
    username         text NOT NULL,
    state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoke_failed', 'revoked')),
    renewable        boolean NOT NULL DEFAULT true,
    issued_at        timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    max_expires_at   timestamptz NOT NULL,
    renewed_at       timestamptz,
    -- when the sweeper must act: expires_at while active, the next retry while revoke_failed,
    -- NULL once revoked; the partial index makes a sweep touch only what is due
    due_at           timestamptz,
    revoke_attempts  integer NOT NULL DEFAULT 0,
    last_error       text,
    revoked_at       timestamptz,
    revoke_reason    text
);
CREATE INDEX dynamic_leases_due ON dynamic_leases (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX dynamic_leases_tenant ON dynamic_leases (tenant_id, id);
CREATE INDEX dynamic_leases_owner ON dynamic_leases (owner_principal, id);
CREATE INDEX dynamic_leases_engine_live ON dynamic_leases (engine_id) WHERE state <> 'revoked';
CREATE INDEX dynamic_leases_revoked ON dynamic_leases (revoked_at) WHERE state = 'revoked';
