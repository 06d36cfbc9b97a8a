"""`switchboard` console command: serve, migrate, dev."""

from __future__ import annotations

import argparse
import sys

from server.config import ConfigError


def _serve() -> int:
    import uvloop

    from server import app, config

    try:
        settings = config.load()
        uvloop.run(app.serve(settings))
    except (ConfigError, app.StartupError) as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    return 0


def _migrate() -> int:
    import os

    from server import migrate

    dsn = os.environ.get("SWITCHBOARD_PG_DSN", "")
    if not dsn:
        print(
            "switchboard: invalid setting pg_dsn: Field required (set SWITCHBOARD_PG_DSN)",
            file=sys.stderr,
        )
        return 2
    migrate.upgrade(dsn)
    print(f"switchboard: schema at {migrate.head_revision()}")
    return 0


def _dev(argv: list[str]) -> int:
    from server.devstack.stack import run_dev

    code: int = run_dev(argv)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "serve", help="run the gRPC server (config from configs/<env>.yaml and SWITCHBOARD_*)"
    )
    sub.add_parser("migrate", help="apply database migrations (safe to run concurrently)")
    sub.add_parser("dev", help="run the whole platform locally (embedded PostgreSQL/Redis, Envoy)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        return _serve()
    if args.command == "migrate":
        return _migrate()
    return _dev(rest)


if __name__ == "__main__":
    sys.exit(main())
