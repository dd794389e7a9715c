-- A message's deletion cancels its deliveries not yet made (store/webhooks.py). Finding them by
-- json_extract over every pending body cost ~50 ms per 10,000 pending (a receiver down for a day),
-- holding the writer; the message's id now has a column, indexed while a delivery is pending.
ALTER TABLE webhook_deliveries ADD COLUMN message_id TEXT;
UPDATE webhook_deliveries SET message_id = json_extract(body, '$.data.id')
 WHERE status = 'pending' AND event_name IN ('message.created', 'message.updated', 'message.translated');
CREATE INDEX webhook_deliveries_message ON webhook_deliveries(message_id) WHERE status = 'pending';
