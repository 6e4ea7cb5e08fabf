-- Identity cache mirrored from ScaiKey (spec/15), ScaiVault's role store, personal access
-- tokens, identity sync runs and processed ScaiKey webhook events. ScaiKey ids are opaque text.

CREATE TABLE identity_partners (
    id              text PRIMARY KEY,
    name            text,
    slug            text,
    region          text,
    status          text NOT NULL DEFAULT 'ACTIVE',
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    synced          boolean NOT NULL DEFAULT true,     -- false: created just in time from a token
    deleted_at      timestamptz,
    last_synced_at  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE identity_tenants (
    id              text PRIMARY KEY,
    partner_id      text,
    name            text,
    slug            text,
    status          text NOT NULL DEFAULT 'ACTIVE',
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    synced          boolean NOT NULL DEFAULT true,
    deleted_at      timestamptz,
    last_synced_at  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identity_tenants_partner ON identity_tenants (partner_id);
CREATE INDEX identity_tenants_slug ON identity_tenants (slug);

CREATE TABLE identity_users (
    id              text PRIMARY KEY,
    tenant_id       text,
    email           text,
    first_name      text,
    last_name       text,
    display_name    text,
    status          text NOT NULL DEFAULT 'ACTIVE',
    mfa_enabled     boolean NOT NULL DEFAULT false,
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    deleted_at      timestamptz,
    last_synced_at  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identity_users_tenant ON identity_users (tenant_id);
CREATE INDEX identity_users_email ON identity_users (lower(email));

CREATE TABLE identity_groups (
    id              text PRIMARY KEY,
    tenant_id       text,
    name            text NOT NULL,
    description     text,
    group_type      text,
    deleted_at      timestamptz,
    last_synced_at  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identity_groups_tenant ON identity_groups (tenant_id);

-- A member is a user or (nesting) another group.
CREATE TABLE identity_group_members (
    group_id         text NOT NULL,
    member_type      text NOT NULL CHECK (member_type IN ('user', 'group')),
    member_id        text NOT NULL,
    membership_type  text NOT NULL DEFAULT 'DIRECT',
    added_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, member_type, member_id)
);
CREATE INDEX identity_group_members_member ON identity_group_members (member_type, member_id);

CREATE TABLE identity_applications (
    id                text PRIMARY KEY,
    client_id         text,
    name              text,
    slug              text,
    scope             text,
    application_type  text,
    tenant_id         text,
    partner_id        text,
    attributes        jsonb NOT NULL DEFAULT '{}'::jsonb,
    deleted_at        timestamptz,
    last_synced_at    timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identity_applications_client ON identity_applications (client_id);

-- ScaiVault's own admin-role store; reach: partner_id for partner_admin, tenant_id for tenant_admin.
CREATE TABLE identity_role_assignments (
    identity_id   text NOT NULL,
    role          text NOT NULL CHECK (role IN ('super_admin', 'partner_admin', 'tenant_admin')),
    partner_id    text,
    tenant_id     text,
    source        text NOT NULL DEFAULT 'store',    -- store | bootstrap | scaikey
    granted_by    text,
    granted_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    PRIMARY KEY (identity_id, role)
);

CREATE TABLE personal_tokens (
    id            text PRIMARY KEY,
    token_hash    bytea NOT NULL UNIQUE,            -- sha256 of the full skt_ value
    name          text NOT NULL,
    identity_id   text NOT NULL,
    identity_type text NOT NULL,
    subject       text NOT NULL,
    display_name  text,
    tenant_id     text,
    partner_id    text,
    scopes        text[] NOT NULL,
    roles         text[] NOT NULL DEFAULT '{}',      -- the creator's token roles at creation
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX personal_tokens_identity ON personal_tokens (identity_id);

CREATE TABLE identity_sync_runs (
    id           text PRIMARY KEY,
    kind         text NOT NULL,                     -- full | partner | tenant
    partner_id   text,
    tenant_id    text,
    trigger      text NOT NULL,                     -- schedule | api
    status       text NOT NULL,                     -- running | succeeded | failed | skipped
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    counts       jsonb NOT NULL DEFAULT '{}'::jsonb,
    error        text,
    requested_by text
);
CREATE INDEX identity_sync_runs_started ON identity_sync_runs (started_at DESC);

CREATE TABLE identity_webhook_events (
    event_id     text PRIMARY KEY,
    event_type   text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    outcome      text NOT NULL DEFAULT 'applied'    -- applied | ignored | failed
);
