-- Core schema: accounts, tokens, workspaces, channels, members, invites, messages, direct chat,
-- and the durable event log. Times are ISO-8601 UTC text with microseconds (string order = time order).

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    kind               TEXT NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'guest')),
    name               TEXT NOT NULL,
    email              TEXT UNIQUE,             -- lower-cased; NULL for guests
    password_hash      TEXT,                    -- bcrypt; NULL for password-less accounts
    preferred_language TEXT NOT NULL DEFAULT 'en',
    avatar_url         TEXT,
    email_verified_at  TEXT,
    is_active          INTEGER NOT NULL DEFAULT 1,
    last_login_at      TEXT,
    room_plan          TEXT,                    -- temporary-rooms plan; NULL = the configured default
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);

-- Bearer tokens "<id>|<secret>": only sha256(secret) is stored.
CREATE TABLE access_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('login', 'personal')),
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    abilities    TEXT NOT NULL,                 -- JSON list
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX access_tokens_user ON access_tokens(user_id);

CREATE TABLE workspaces (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL DEFAULT 'standard' CHECK (kind IN ('standard', 'temporary_room')),
    name          TEXT NOT NULL,
    slug          TEXT NOT NULL UNIQUE,
    owner_id      TEXT NOT NULL REFERENCES users(id),
    password_hash TEXT,
    glossary      TEXT NOT NULL DEFAULT '[]',  -- JSON list of terms never translated
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE members (
    id                 TEXT PRIMARY KEY,
    workspace_id       TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    user_id            TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role               TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'guest')),
    preferred_language TEXT,                    -- overrides the user's own inside this workspace
    joined_at          TEXT NOT NULL,
    UNIQUE (workspace_id, user_id)
);
CREATE INDEX members_user ON members(user_id);

CREATE TABLE channels (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL DEFAULT 'standard' CHECK (kind IN ('standard', 'temporary_room')),
    name          TEXT NOT NULL,
    slug          TEXT NOT NULL,
    password_hash TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (workspace_id, slug)
);

-- Who joined a password-protected channel with its password.
CREATE TABLE channel_access (
    channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    joined_at  TEXT NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);

CREATE TABLE invites (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    code         TEXT NOT NULL UNIQUE,
    expires_at   TEXT NOT NULL,
    max_uses     INTEGER,
    uses         INTEGER NOT NULL DEFAULT 0,
    created_by   TEXT NOT NULL REFERENCES users(id),
    revoked_at   TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX invites_workspace ON invites(workspace_id);

CREATE TABLE direct_conversations (
    id              TEXT PRIMARY KEY,
    pair_key        TEXT NOT NULL UNIQUE,       -- "<smaller user id>:<larger user id>"
    last_message_at TEXT,
    created_at      TEXT NOT NULL
);

CREATE TABLE direct_participants (
    conversation_id TEXT NOT NULL REFERENCES direct_conversations(id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX direct_participants_user ON direct_participants(user_id);

CREATE TABLE messages (
    id                TEXT PRIMARY KEY,
    workspace_id      TEXT REFERENCES workspaces(id) ON DELETE CASCADE,
    channel_id        TEXT REFERENCES channels(id) ON DELETE CASCADE,
    conversation_id   TEXT REFERENCES direct_conversations(id) ON DELETE CASCADE,
    author_kind       TEXT NOT NULL CHECK (author_kind IN ('user', 'guest', 'webhook', 'automation')),
    author_id         TEXT NOT NULL,            -- a user id, or a webhook id for webhook authors
    author_name       TEXT,                     -- display-name override (e.g. a Slack payload's username)
    author_avatar_url TEXT,
    original_content  TEXT NOT NULL,
    source_language   TEXT NOT NULL,
    skip_translation  INTEGER NOT NULL DEFAULT 0,
    parent_message_id TEXT REFERENCES messages(id) ON DELETE SET NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    deleted_at        TEXT,
    CHECK ((channel_id IS NULL) <> (conversation_id IS NULL))
);
CREATE INDEX messages_channel ON messages(channel_id, id);
CREATE INDEX messages_conversation ON messages(conversation_id, id);

-- The durable event log feeding WebSocket and SSE. One audience per row.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    audience_kind TEXT NOT NULL CHECK (audience_kind IN ('workspace', 'channel', 'conversation', 'user', 'room')),
    audience_id   TEXT NOT NULL,
    payload       TEXT NOT NULL,                -- JSON
    created_at    TEXT NOT NULL
);
CREATE INDEX events_created ON events(created_at);
