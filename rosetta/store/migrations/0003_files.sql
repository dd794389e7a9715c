-- Files and message attachments (issue 5). An upload is staged with expires_at; a message claims it
-- (claimed_at set, expires_at cleared) in the same transaction as the message. Bytes live on disk under
-- storage_name, a random name unrelated to the client's; rows are soft-deleted first, bytes removed after.

CREATE TABLE files (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,  -- a user or a guest user
    owner_kind   TEXT NOT NULL CHECK (owner_kind IN ('user', 'guest')), -- guest uploads are never listed
    client_name  TEXT NOT NULL,                 -- sanitized metadata only, never a path
    mime_type    TEXT NOT NULL,                 -- sniffed from the bytes, not the client's claim
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,                 -- hex; also the download ETag
    storage_name TEXT NOT NULL UNIQUE,          -- random hex name under <data_dir>/files/
    visibility   TEXT NOT NULL CHECK (visibility IN ('private', 'public')),
    width        INTEGER,                       -- images only
    height       INTEGER,
    has_thumbnail INTEGER NOT NULL DEFAULT 0,
    expires_at   TEXT,                          -- NULL once claimed
    claimed_at   TEXT,
    deleted_at   TEXT,
    created_at   TEXT NOT NULL
);
-- /me/files and the quota sum read a user's live files.
CREATE INDEX files_owner ON files(owner_id, deleted_at, created_at);
-- The sweep looks for staged files past their expiry.
CREATE INDEX files_staged ON files(expires_at) WHERE claimed_at IS NULL AND deleted_at IS NULL;

CREATE TABLE message_attachments (
    id         TEXT PRIMARY KEY,                -- the attachment id of the download routes
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    file_id    TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    UNIQUE (message_id, position)
);
CREATE INDEX message_attachments_file ON message_attachments(file_id);
