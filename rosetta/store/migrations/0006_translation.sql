-- Translation: one durable job (and, when done, the result) per message and reader language, and
-- the translation memory that lets repeated chat lines ("ok", "thanks") be translated once.

CREATE TABLE message_translations (
    message_id      TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    language        TEXT NOT NULL,              -- the reader language this serves
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed', 'failed')),
    content         TEXT,                       -- the translation, once completed
    attempts        INTEGER NOT NULL DEFAULT 0, -- provider attempts that failed
    next_attempt_at TEXT NOT NULL,              -- not claimed before this time (backoff)
    lease_until     TEXT,                       -- a worker holds the job until then; expired = claimable
    last_error      TEXT,
    audience_kind   TEXT NOT NULL,              -- who hears message.translated (the message's place)
    audience_id     TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (message_id, language)
);
-- The worker's question: pending jobs whose time has come, oldest first.
CREATE INDEX message_translations_due ON message_translations(next_attempt_at) WHERE status = 'pending';

CREATE TABLE translation_memory (
    provider    TEXT NOT NULL,
    source      TEXT NOT NULL,
    target      TEXT NOT NULL,
    masked_hash TEXT NOT NULL,                  -- sha256 of the masked text (placeholders, not their pieces)
    translated  TEXT NOT NULL,                  -- the masked translation; pieces are restored per message
    created_at  TEXT NOT NULL,
    PRIMARY KEY (provider, source, target, masked_hash)
);
