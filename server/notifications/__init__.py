"""Notifications: the transactional outbox, its dispatch contract and administration."""
