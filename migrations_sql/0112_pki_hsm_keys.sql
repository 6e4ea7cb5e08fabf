-- Issue 12: a CA key may live in the HSM (KMS_PROVIDER=pkcs11, key_storage 'hsm') instead of being
-- sealed; the row then names the token's key pair by CKA_LABEL and CKA_ID (hex) and has no sealed_key.
ALTER TABLE pki_cas
    ADD COLUMN key_storage   text NOT NULL DEFAULT 'sealed',   -- sealed | hsm
    ADD COLUMN hsm_key_label text,
    ADD COLUMN hsm_key_id    text,
    ADD CONSTRAINT pki_cas_key_storage CHECK (
        (key_storage = 'sealed' AND sealed_key IS NOT NULL AND hsm_key_id IS NULL)
        OR (key_storage = 'hsm' AND sealed_key IS NULL AND hsm_key_id IS NOT NULL));
