-- Federation backends (spec/50 section 3): external stores ScaiVault fronts, per tenant.
-- `config` holds connection settings and the ScaiVault path of the backend's credentials,
-- never a credential itself.
CREATE TABLE federation_backends (
    id                    text PRIMARY KEY,
    tenant_id             text NOT NULL,
    partner_id            text NOT NULL,
    name                  text NOT NULL,
    type                  text NOT NULL,
    mode                  text NOT NULL CHECK (mode IN ('proxy', 'sync')),
    config                jsonb NOT NULL DEFAULT '{}',
    path_mapping          jsonb NOT NULL,
    sync_interval         integer CHECK (sync_interval IS NULL OR sync_interval >= 60),
    status                text NOT NULL DEFAULT 'healthy',
    last_sync_at          timestamptz,
    last_sync_duration_ms integer,
    last_sync_result      jsonb,
    last_error            text,
    next_sync_at          timestamptz,
    created_by            text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
CREATE INDEX federation_backends_due ON federation_backends (next_sync_at) WHERE mode = 'sync';

-- Per synced path: the backend's version id and the local version they matched at the last sync.
CREATE TABLE federation_sync_state (
    backend_id     text NOT NULL REFERENCES federation_backends (id) ON DELETE CASCADE,
    path           text NOT NULL,
    remote_path    text NOT NULL,
    remote_version text NOT NULL,
    local_version  integer NOT NULL,
    synced_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (backend_id, path)
);

CREATE TABLE federation_conflicts (
    id             text PRIMARY KEY,
    backend_id     text NOT NULL REFERENCES federation_backends (id) ON DELETE CASCADE,
    path           text NOT NULL,
    remote_path    text NOT NULL,
    reason         text NOT NULL,
    local_version  integer,
    remote_version text,
    detected_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz
);
CREATE INDEX federation_conflicts_open ON federation_conflicts (backend_id, path) WHERE resolved_at IS NULL;
