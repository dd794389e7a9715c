-- A mail's body holds a one-time code or link in the clear. It is dropped once the mail was sent or
-- ended failed (store/outbox.py); this drops the bodies such mails kept before that was so.
UPDATE mail_outbox SET body = '' WHERE status != 'pending';
