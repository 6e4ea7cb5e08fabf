-- certificate.expiring notices already sent (one per certificate and threshold). No foreign key:
-- pki_certificates is created by a later-numbered migration on a fresh database.
CREATE TABLE certificate_expiry_notices (
    certificate_id  text NOT NULL,
    threshold       text NOT NULL,
    sent_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (certificate_id, threshold)
);
