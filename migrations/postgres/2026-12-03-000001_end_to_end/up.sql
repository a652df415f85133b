-- End-to-end encrypted sessions (SPEC §10): whether a session is one, and its sealed destination,
-- which the server keeps and relays but cannot open (the clear destination_* columns stay empty).
ALTER TABLE sessions ADD COLUMN e2e BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sessions ADD COLUMN destination_sealed TEXT;
