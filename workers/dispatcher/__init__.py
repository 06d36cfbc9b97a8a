"""The notification dispatcher: a gRPC client that leases rendered notifications from the
server, sends them (Telegram Bot API, SMTP, or only a log line) and reports the outcomes.
Run it as ``python -m workers.dispatcher``; see docs/notifications.md."""
