"""Local infrastructure for `make dev` and the tests.

- :mod:`server.devstack.embedded`: embedded PostgreSQL and Redis on 127.0.0.1.
- :mod:`server.devstack.processes`: the platform server as a child process (health-checked).
- :mod:`server.devstack.stack`: the `switchboard dev` orchestrator (``run_dev``).
"""

from server.devstack.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedRedis, free_port

__all__ = ["EmbeddedError", "EmbeddedPostgres", "EmbeddedRedis", "free_port"]
