-- Issue 9 (F3): a personal token never outlives or survives what minted it, and carries no role snapshot.
-- parent_id: the personal token that minted this one (NULL: minted from a user's ScaiKey session).
ALTER TABLE personal_tokens ADD COLUMN parent_id text;
CREATE INDEX personal_tokens_parent ON personal_tokens (parent_id) WHERE parent_id IS NOT NULL;
-- roles are derived at use from the role store; the snapshot column is no longer read
UPDATE personal_tokens SET roles = '{}' WHERE roles <> '{}';
