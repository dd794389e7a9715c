"""Outgoing mail: building safe messages and handing them to SMTP (the outbox lives in services/mailer)."""
