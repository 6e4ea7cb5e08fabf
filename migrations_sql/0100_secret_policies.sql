-- Secret policies: value-generation recipes (spec/20 section 6). `fields` is the validated
-- generator list; a policy never holds secret material (static values are configuration).
CREATE TABLE secret_policies (
    id           text PRIMARY KEY,
    tenant_id    text NOT NULL,
    partner_id   text,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    policy_type  text NOT NULL DEFAULT 'custom',
    fields       jsonb NOT NULL,
    is_active    boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX secret_policies_name ON secret_policies (tenant_id, name);
