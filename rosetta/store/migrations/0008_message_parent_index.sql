-- messages.parent_message_id is a foreign key with ON DELETE SET NULL: every deleted message makes
-- SQLite look for its replies. Without an index that is a scan of the whole messages table per
-- deleted row, so a room purge or a channel delete of 10,000 messages held the one writer for ~33 s
-- (20,000 rows in the table); with it, milliseconds.
CREATE INDEX messages_parent ON messages(parent_message_id) WHERE parent_message_id IS NOT NULL;
