ALTER TABLE sessions DROP COLUMN destination_sealed;
ALTER TABLE sessions DROP COLUMN e2e;
