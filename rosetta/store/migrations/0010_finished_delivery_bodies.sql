-- A finished outgoing webhook delivery is never sent or shown again, and its body may hold a
-- message's text. Finishing now drops the body (store/webhooks.py); this drops the bodies that
-- finished deliveries kept before that was so.
UPDATE webhook_deliveries SET body = '' WHERE status != 'pending';
