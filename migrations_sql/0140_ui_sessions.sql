-- Admin web UI (/ui/): server-side sign-in sessions and pending OpenID Connect logins.
-- A session row holds the signed-in bearer token encrypted under a key derived from the
-- session cookie's secret, which is stored only as a hash: the database alone never yields
-- a usable token, and signing out deletes the row.
CREATE TABLE ui_sessions (
    id_hash      bytea PRIMARY KEY,
    sealed_token bytea NOT NULL,
    identity_id  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX ui_sessions_expires_at ON ui_sessions (expires_at);

-- One row per authorization request sent to ScaiKey: the PKCE verifier and nonce wait here
-- (keyed by the hash of `state`, which the browser carries in a cookie) until the callback.
CREATE TABLE ui_logins (
    state_hash    bytea PRIMARY KEY,
    code_verifier text NOT NULL,
    nonce         text NOT NULL,
    expires_at    timestamptz NOT NULL
);
