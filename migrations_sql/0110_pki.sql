-- Issue 12: internal CAs, roles, issued certificates and their cached CRLs.
-- CA private keys are sealed by the keyring (SealContext kind "pki_ca_key", object the CA id);
-- stored leaf keys go into the certificate's secret, never into these tables.
CREATE TABLE pki_cas (
    id                  text PRIMARY KEY,
    partner_id          text NOT NULL,
    tenant_id           text NOT NULL,
    name                text NOT NULL,
    common_name         text NOT NULL,
    ca_type             text NOT NULL,            -- root | intermediate
    parent_ca_id        text REFERENCES pki_cas (id),
    key_type            text NOT NULL,            -- rsa | ec
    key_size            integer NOT NULL,
    status              text NOT NULL,            -- active | pending (CSR out, awaiting its certificate) | revoked
    origin              text NOT NULL,            -- generated | external (CSR signed outside) | imported
    certificate_pem     text,
    chain_pem           text,                     -- the issuers above this CA (PEM, nearest first)
    csr_pem             text,
    sealed_key          bytea,
    serial_number       text,
    valid_from          timestamptz,
    valid_until         timestamptz,
    certificates_issued integer NOT NULL DEFAULT 0,
    revoked_at          timestamptz,
    revocation_reason   text,
    revocations         bigint NOT NULL DEFAULT 0,  -- bumped by every revocation under this CA
    crl_number          bigint NOT NULL DEFAULT 0,
    crl_revocations     bigint NOT NULL DEFAULT -1, -- value of `revocations` the cached CRL reflects
    crl_der             bytea,
    crl_this_update     timestamptz,
    crl_next_update     timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          text
);
CREATE UNIQUE INDEX pki_cas_tenant_name ON pki_cas (tenant_id, name);
CREATE INDEX pki_cas_parent ON pki_cas (parent_ca_id) WHERE parent_ca_id IS NOT NULL;
CREATE INDEX pki_cas_crl_due ON pki_cas (crl_next_update) WHERE status <> 'pending';

CREATE TABLE pki_roles (
    tenant_id   text NOT NULL,
    partner_id  text NOT NULL,
    name        text NOT NULL,
    ca_id       text NOT NULL REFERENCES pki_cas (id),
    config      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE pki_certificates (
    id                  text PRIMARY KEY,
    partner_id          text NOT NULL,
    tenant_id           text NOT NULL,
    ca_id               text NOT NULL REFERENCES pki_cas (id),
    role_name           text,
    serial_number       text NOT NULL,            -- lowercase hex, no separators
    common_name         text,
    dns_names           jsonb NOT NULL DEFAULT '[]'::jsonb,
    ip_sans             jsonb NOT NULL DEFAULT '[]'::jsonb,
    not_before          timestamptz NOT NULL,
    not_after           timestamptz NOT NULL,
    certificate_pem     text NOT NULL,
    secret_path         text,
    source              text NOT NULL,            -- issue | sign | renew
    auto_renew          boolean NOT NULL DEFAULT false,
    renew_request       jsonb,                    -- what renewal re-issues (names, ttl, csr for sign)
    renewed_by          text,
    expiring_noted_at   timestamptz,              -- when certificate.expiring was recorded
    revoked_at          timestamptz,
    revocation_reason   text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          text
);
CREATE UNIQUE INDEX pki_certificates_serial ON pki_certificates (ca_id, serial_number);
CREATE INDEX pki_certificates_tenant ON pki_certificates (tenant_id, id);
CREATE INDEX pki_certificates_expiry ON pki_certificates (tenant_id, not_after);
-- the CRL reads only revoked, unexpired rows of one CA
CREATE INDEX pki_certificates_revoked ON pki_certificates (ca_id, not_after) WHERE revoked_at IS NOT NULL;
CREATE INDEX pki_certificates_renewal ON pki_certificates (not_after) WHERE auto_renew AND renewed_by IS NULL AND revoked_at IS NULL;
