-- Outgoing webhooks offered the event type "member.left", which no event ever had: a member who
-- leaves or is removed is "member.removed". A subscription to it now names the event it meant.
UPDATE outgoing_webhooks SET event_types = replace(event_types, '"member.left"', '"member.removed"')
WHERE event_types LIKE '%"member.left"%';
