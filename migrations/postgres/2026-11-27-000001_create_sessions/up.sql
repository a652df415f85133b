-- Sessions and participants. Locations never come here: they live only in the ephemeral store.
-- Ids are UUID text and times are UTC TIMESTAMPs so that one Diesel schema serves PostgreSQL and SQLite.
CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    name              TEXT,
    created_at        TIMESTAMP NOT NULL,
    expires_at        TIMESTAMP NOT NULL,
    last_activity_at  TIMESTAMP NOT NULL,
    ended_at          TIMESTAMP,
    end_reason        TEXT,
    -- Non-removed participants, kept beside the row so the cap is one conditional UPDATE.
    participant_count INTEGER NOT NULL DEFAULT 0 CHECK (participant_count >= 0)
);

-- The cleanup sweep looks for live sessions past their expiry or inactivity limit ...
CREATE INDEX sessions_live_expires_at ON sessions (expires_at) WHERE ended_at IS NULL;
CREATE INDEX sessions_live_last_activity_at ON sessions (last_activity_at) WHERE ended_at IS NULL;
-- ... and for ended sessions to purge.
CREATE INDEX sessions_ended_at ON sessions (ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE participants (
    id             TEXT PRIMARY KEY,
    session_id     TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    display_name   TEXT NOT NULL,
    avatar_color   TEXT NOT NULL,
    joined_at      TIMESTAMP NOT NULL,
    last_seen_at   TIMESTAMP NOT NULL,
    removed_at     TIMESTAMP,
    removed_reason TEXT
);

-- Listing a session's participants, and the cascade on purge.
CREATE INDEX participants_session_id ON participants (session_id, joined_at);
-- The sweep for participants not seen for the inactivity limit.
CREATE INDEX participants_live_last_seen_at ON participants (last_seen_at) WHERE removed_at IS NULL;
