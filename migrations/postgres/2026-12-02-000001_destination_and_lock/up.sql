-- The meeting point of SPEC §7 (the creator's, never a participant's position) and the lock of §9.
-- Arrivals are not here: like positions, they live only in the ephemeral store.
ALTER TABLE sessions ADD COLUMN locked BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sessions ADD COLUMN destination_lat DOUBLE PRECISION;
ALTER TABLE sessions ADD COLUMN destination_lng DOUBLE PRECISION;
ALTER TABLE sessions ADD COLUMN destination_radius_m DOUBLE PRECISION;
ALTER TABLE sessions ADD COLUMN destination_label TEXT;
ALTER TABLE sessions ADD COLUMN destination_set_at TIMESTAMP;
