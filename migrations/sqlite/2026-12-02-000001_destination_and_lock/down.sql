ALTER TABLE sessions DROP COLUMN destination_set_at;
ALTER TABLE sessions DROP COLUMN destination_label;
ALTER TABLE sessions DROP COLUMN destination_radius_m;
ALTER TABLE sessions DROP COLUMN destination_lng;
ALTER TABLE sessions DROP COLUMN destination_lat;
ALTER TABLE sessions DROP COLUMN locked;
