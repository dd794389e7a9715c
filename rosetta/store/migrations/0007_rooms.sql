-- External temporary rooms (issue 8). A room is its own workspace (workspaces.kind = 'temporary_room')
-- with one channel (channels.kind = 'temporary_room'), owned by the developer who created it. Guests are
-- users rows with kind = 'guest' (email NULL) and a members row with role 'guest'.

CREATE TABLE temporary_rooms (
    id                 TEXT PRIMARY KEY,            -- the room_id of the API
    workspace_id       TEXT NOT NULL UNIQUE REFERENCES workspaces(id) ON DELETE CASCADE,
    channel_id         TEXT NOT NULL UNIQUE REFERENCES channels(id) ON DELETE CASCADE,
    owner_id           TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    external_reference TEXT,
    -- active until the sweep sees expires_at pass; purged once messages and files are gone.
    status             TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'expired', 'purged')),
    expires_at         TEXT NOT NULL,
    max_expires_at     TEXT NOT NULL,               -- created_at + the plan's longest lifetime
    extension_count    INTEGER NOT NULL DEFAULT 0,
    plan               TEXT NOT NULL CHECK (plan IN ('free', 'developer')),
    created_at         TEXT NOT NULL,
    expired_at         TEXT,
    purged_at          TEXT
);
-- Quotas count a developer's rooms by creation time (monthly) and by status (active).
CREATE INDEX temporary_rooms_owner ON temporary_rooms(owner_id, created_at);
-- The sweep looks for active rooms past expires_at, and expired rooms past the purge grace.
CREATE INDEX temporary_rooms_due ON temporary_rooms(status, expires_at);

-- Guest sessions "grst_<id>_<secret>": only sha256(secret) is stored. A token dies with its room.
CREATE TABLE guest_tokens (
    id          TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL REFERENCES temporary_rooms(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX guest_tokens_room ON guest_tokens(room_id);
