-- Key hierarchy (see scaivault/crypto): the KMS key is the root; these tables hold only
-- wrapped key material. kms_roots records which KMS key(s) wrap the partner keys, with a
-- random check value wrapped by each so start-up can prove the configured key is right.
CREATE TABLE kms_roots (
    version                  integer PRIMARY KEY,
    provider                 text NOT NULL,
    key_ref                  text NOT NULL,
    secondary_key_ref        text,
    wrapped_check            bytea NOT NULL,
    wrapped_check_secondary  bytea,
    check_commitment         bytea NOT NULL,
    key_version_hint         text,
    status                   text NOT NULL CHECK (status IN ('active', 'rotating', 'retired')),
    created_at               timestamptz NOT NULL DEFAULT now(),
    activated_at             timestamptz,
    retired_at               timestamptz
);
CREATE UNIQUE INDEX kms_roots_one_active ON kms_roots ((status)) WHERE status IN ('active', 'rotating');

-- One master key per partner, wrapped by the root (and by the secondary key when configured).
-- commitment = HMAC-SHA256(key, aad) binds the key to its partner even on KMSs without AAD.
CREATE TABLE partner_keys (
    partner_id         text PRIMARY KEY,
    root_version       integer NOT NULL REFERENCES kms_roots (version),
    wrapped            bytea NOT NULL,
    wrapped_secondary  bytea,
    commitment         bytea NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    rewrapped_at       timestamptz
);
CREATE INDEX partner_keys_root_version ON partner_keys (root_version);

-- Tenant envelope keys, AES-256-GCM-wrapped by the partner key. tenant_id '' is the
-- partner's own key (partner-owned objects). Retired versions still open old values.
CREATE TABLE tenant_keys (
    partner_id   text NOT NULL REFERENCES partner_keys (partner_id),
    tenant_id    text NOT NULL,
    version      integer NOT NULL CHECK (version >= 1),
    wrapped      bytea NOT NULL,
    status       text NOT NULL CHECK (status IN ('active', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,
    PRIMARY KEY (partner_id, tenant_id, version)
);
CREATE UNIQUE INDEX tenant_keys_one_active ON tenant_keys (partner_id, tenant_id) WHERE status = 'active';

-- Root and tenant key rotations: progress survives a crash and the next run resumes.
CREATE TABLE key_rotations (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('root', 'tenant')),
    target        text NOT NULL,
    status        text NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    requested_by  text,
    progress      jsonb NOT NULL DEFAULT '{}'::jsonb,
    error         text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);

-- The `db` storage backend: sealed objects kept in PostgreSQL.
CREATE TABLE storage_objects (
    key         text PRIMARY KEY,
    data        bytea NOT NULL,
    size        bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
