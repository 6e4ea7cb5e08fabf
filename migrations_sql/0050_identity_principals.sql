-- Issue 9 (F1/F4/F8): identity-owned records are keyed on ScaiKey's immutable `sub` with its
-- tenant ("principal" = '<tenant_id or ->/<sub>'), never on an email or a display name.
-- `identity_id` stays on the rows as the name the grant was made under (for display only).

ALTER TABLE identity_role_assignments ADD COLUMN principal text;

-- Existing grants keyed on `user:<email>` move to the one cached user they can belong to:
-- a tenant_admin grant to the user of that tenant, a partner_admin grant to a user of that
-- partner, a super_admin grant to the only user with that email. Rows keyed on `user:<sub>`
-- (identities seen before the first sync) move to that user.
WITH candidates AS (
    SELECT r.identity_id, r.role, u.tenant_id, u.id AS sub
      FROM identity_role_assignments r
      JOIN identity_users u
        ON u.deleted_at IS NULL
       AND (lower(u.email) = lower(substr(r.identity_id, 6)) OR u.id = substr(r.identity_id, 6))
      LEFT JOIN identity_tenants t ON t.id = u.tenant_id
     WHERE r.identity_id LIKE 'user:%'
       AND (r.role = 'super_admin'
            OR (r.role = 'partner_admin' AND t.partner_id = r.partner_id)
            OR (r.role = 'tenant_admin' AND u.tenant_id = r.tenant_id))
), unique_owner AS (
    SELECT identity_id, role, min(coalesce(tenant_id, '-')) AS tenant_id, min(sub) AS sub
      FROM candidates GROUP BY identity_id, role HAVING count(*) = 1
)
UPDATE identity_role_assignments r SET principal = o.tenant_id || '/' || o.sub
  FROM unique_owner o
 WHERE r.identity_id = o.identity_id AND r.role = o.role;

-- the development admin of `scaivault dev` (never a cached user)
UPDATE identity_role_assignments SET principal = 'tnt_dev/usr_dev'
 WHERE principal IS NULL AND identity_id = 'user:dev@localhost' AND granted_by = 'system:dev';

-- What cannot be attributed to exactly one principal grants nothing any more; it is kept in
-- system_state for the operator (re-grant with PUT /v1/identity/users/{usr_id}/roles).
INSERT INTO system_state (key, value)
SELECT 'legacy_role_assignments_unresolved',
       jsonb_agg(jsonb_build_object('identity_id', identity_id, 'role', role, 'partner_id', partner_id,
                                    'tenant_id', tenant_id, 'source', source, 'granted_at', granted_at))
  FROM identity_role_assignments WHERE principal IS NULL
HAVING count(*) > 0
ON CONFLICT (key) DO UPDATE SET value = system_state.value || EXCLUDED.value, updated_at = now();
DELETE FROM identity_role_assignments WHERE principal IS NULL;

ALTER TABLE identity_role_assignments DROP CONSTRAINT identity_role_assignments_pkey;
ALTER TABLE identity_role_assignments ALTER COLUMN principal SET NOT NULL;
ALTER TABLE identity_role_assignments ADD PRIMARY KEY (principal, role);

-- Personal tokens already record their owner's sub and tenant: list, count and revoke by them.
CREATE INDEX personal_tokens_owner ON personal_tokens (subject, tenant_id);
