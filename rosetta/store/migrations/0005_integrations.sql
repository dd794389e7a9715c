-- Integrations: incoming workspace webhooks, outgoing webhooks with a delivery outbox, push devices
-- and the push outbox. Times are ISO-8601 UTC text with microseconds (string order = time order).

-- Incoming webhooks: only sha256(secret) is stored; the secret is shown at create/regenerate only.
CREATE TABLE webhooks (
    id                 TEXT PRIMARY KEY,
    workspace_id       TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    default_channel_id TEXT REFERENCES channels(id) ON DELETE SET NULL,
    secret_hash        TEXT NOT NULL UNIQUE,     -- the /hooks/{secret} route finds the webhook by it
    is_active          INTEGER NOT NULL DEFAULT 1,
    last_used_at       TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    deleted_at         TEXT                      -- soft delete: a post to a deleted webhook is 404
);
CREATE INDEX webhooks_workspace ON webhooks(workspace_id);

-- Outgoing webhooks: a URL subscribed to event types of one workspace.
CREATE TABLE outgoing_webhooks (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    url          TEXT NOT NULL,
    event_types  TEXT NOT NULL,                  -- JSON list, e.g. ["message.created"]
    secret       TEXT NOT NULL,                  -- in clear on purpose: HMAC signing needs the key itself
    is_active    INTEGER NOT NULL DEFAULT 1,
    created_by   TEXT NOT NULL REFERENCES users(id),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX outgoing_webhooks_workspace ON outgoing_webhooks(workspace_id);

-- The durable outbox of outgoing webhook calls, written in the same transaction as the event.
CREATE TABLE webhook_deliveries (
    id                  TEXT PRIMARY KEY,
    outgoing_webhook_id TEXT NOT NULL REFERENCES outgoing_webhooks(id) ON DELETE CASCADE,
    event_name          TEXT NOT NULL,
    event_seq           INTEGER NOT NULL,
    body                TEXT NOT NULL,           -- the exact JSON sent (and signed)
    status              TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     TEXT NOT NULL,
    last_error          TEXT,
    response_status     INTEGER,
    created_at          TEXT NOT NULL,
    finished_at         TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(outgoing_webhook_id, id);

-- Push devices: the push token is the identity (UNIQUE by hash); the token itself is kept because
-- sending needs it, and it is never returned by the API.
CREATE TABLE devices (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    platform        TEXT NOT NULL,
    provider        TEXT NOT NULL CHECK (provider IN ('fcm', 'expo', 'ntfy')),
    push_token_hash TEXT NOT NULL UNIQUE,
    push_token      TEXT NOT NULL,
    device_name     TEXT,
    app_version     TEXT,
    device_id       TEXT,
    last_used_at    TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX devices_user ON devices(user_id, created_at);

-- The durable push outbox: one row per (message, device) still to be sent; sent rows are deleted.
CREATE TABLE push_outbox (
    id              TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    message_id      TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    language        TEXT NOT NULL,               -- the recipient's reading language at enqueue time
    reason          TEXT NOT NULL CHECK (reason IN ('direct', 'mention')),
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX push_outbox_due ON push_outbox(status, next_attempt_at);
CREATE INDEX push_outbox_device ON push_outbox(device_id);
