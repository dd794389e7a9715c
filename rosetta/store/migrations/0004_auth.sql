-- Sign-in beyond passwords: the mail outbox, email one-time codes, password resets, cookie sessions,
-- OAuth flow state and linked social accounts. Every secret is stored hashed.

-- Outgoing mail: a row per message, sent by the `mail.send` job with retries (never by a request).
CREATE TABLE mail_outbox (
    id              TEXT PRIMARY KEY,
    "to"            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox(status, next_attempt_at);

-- Email one-time codes: HMAC-SHA256(app key, email:code); one live code per email.
CREATE TABLE otp_codes (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    code_hash   TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    expires_at  TEXT NOT NULL,
    consumed_at TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX otp_codes_email ON otp_codes(email);

-- Password reset tokens: sha256 of the secret in the mailed link; single use.
CREATE TABLE password_resets (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX password_resets_user ON password_resets(user_id);

-- Cookie sessions of the web sign-in: sha256 of the cookie secret and of the bound XSRF token.
CREATE TABLE web_sessions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL UNIQUE,
    xsrf_hash   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions(user_id);

-- One row per started OAuth flow, consumed by its callback: login or link, app or web.
CREATE TABLE oauth_states (
    id            TEXT PRIMARY KEY,
    state_hash    TEXT NOT NULL UNIQUE,
    provider      TEXT NOT NULL,
    purpose       TEXT NOT NULL CHECK (purpose IN ('login', 'link')),
    family        TEXT NOT NULL CHECK (family IN ('app', 'web')),
    user_id       TEXT REFERENCES users(id) ON DELETE CASCADE,
    code_verifier TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE social_accounts (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    email      TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (provider, subject)
);
CREATE INDEX social_accounts_user ON social_accounts(user_id);
