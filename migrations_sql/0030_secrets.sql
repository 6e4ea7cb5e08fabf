-- Secrets (one row per path per tenant, or per partner when tenant_id is NULL) and their
-- versions. Version payloads are sealed by the keyring; destroyed versions keep the row
-- (state for reads and the versions list) with sealed_data set to NULL.
CREATE TABLE secrets (
    id                  bigserial PRIMARY KEY,
    partner_id          text NOT NULL,
    tenant_id           text,
    path                text COLLATE "C" NOT NULL,
    secret_type         text NOT NULL,
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    current_version     integer NOT NULL DEFAULT 0,
    max_versions        integer NOT NULL,
    expires_at          timestamptz,
    rotation_policy_id  text,
    secret_policy_id    text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          text,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    updated_by          text,
    last_accessed_at    timestamptz,
    deleted_at          timestamptz,
    deleted_by          text,
    recoverable_until   timestamptz
);

-- Path lookups and keyset listings (byte order thanks to COLLATE "C", so prefix ranges use the index).
CREATE UNIQUE INDEX secrets_tenant_path ON secrets (tenant_id, path) WHERE tenant_id IS NOT NULL;
CREATE UNIQUE INDEX secrets_partner_path ON secrets (partner_id, path) WHERE tenant_id IS NULL;
CREATE INDEX secrets_tags ON secrets USING gin ((metadata -> 'tags'));
CREATE INDEX secrets_expiring ON secrets (expires_at) WHERE expires_at IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX secrets_recoverable ON secrets (recoverable_until) WHERE deleted_at IS NOT NULL;

CREATE TABLE secret_versions (
    id            bigserial PRIMARY KEY,
    secret_id     bigint NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
    version       integer NOT NULL,
    partner_id    text NOT NULL,
    tenant_id     text,
    sealed_data   bytea,
    size_bytes    integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text,
    destroyed_at  timestamptz,
    destroyed_by  text,
    CONSTRAINT secret_versions_one_per_number UNIQUE (secret_id, version)
);
