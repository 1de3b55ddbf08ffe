"""`cringe serve`, `cringe db upgrade|downgrade`, `cringe keys create`, and the client's
commands (`submit`, `jobs`, `status`, `watch`, `cancel`, from `service.client`).

`register(subparsers)` adds these commands to the `cringe` command line; each sets
`handler`, a function of the parsed arguments that returns the exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys

from service.migrations import downgrade, upgrade
from service.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from service.app import SchemaNotCurrent, check_schema
    from service.db import Database

    try:
        settings = Settings()
        db = Database(settings)
        check_schema(db)
        db.dispose()
    except ValidationError as error:
        print(f"error: invalid CRINGE_* settings:\n{error}", file=sys.stderr)
        return EXIT_FAILED
    except SchemaNotCurrent as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except SQLAlchemyError as error:
        print(f"error: cannot reach the database: {error}", file=sys.stderr)
        return EXIT_FAILED
    import os

    if args.no_dispatcher:
        os.environ["CRINGE_DISPATCHER_ENABLED"] = "false"
    if not settings.service_url:
        # Ray workers report back to this server; a wildcard address is not one to dial.
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        os.environ["CRINGE_SERVICE_URL"] = f"http://{host}:{args.port}"
    uvicorn.run("service.app:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="info", access_log=args.access_log)
    return EXIT_OK


def _db_upgrade(args: argparse.Namespace) -> int:
    url = Settings().database_url
    upgrade(url, args.revision)
    print(f"database upgraded to {args.revision}")
    return EXIT_OK


def _db_downgrade(args: argparse.Namespace) -> int:
    downgrade(Settings().database_url, args.revision)
    print(f"database downgraded to {args.revision}")
    return EXIT_OK


def _keys_create(args: argparse.Namespace) -> int:
    from service.app import SchemaNotCurrent, check_schema
    from service.auth import create_api_key
    from service.db import Database

    db = Database(Settings())
    try:
        check_schema(db)
        principal, secret = create_api_key(db, args.project)
    except SchemaNotCurrent as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        db.dispose()
    print(secret)
    print(f"created key {principal.key_id} for project {args.project!r} "
          f"({principal.project_id}); it is shown only this once", file=sys.stderr)
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the service's and the client's commands to the `cringe` parser's subcommands."""
    from service.client.commands import register as register_client

    serve = subparsers.add_parser("serve", help="run the REST API (and its dispatcher)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="API processes")
    serve.add_argument("--no-dispatcher", action="store_true",
                       help="serve the API only; another process runs the jobs")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(handler=_serve)

    db = subparsers.add_parser("db", help="database schema migrations (CRINGE_DATABASE_URL)")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    db_up = db_commands.add_parser("upgrade", help="migrate the schema to the latest version")
    db_up.add_argument("--revision", default="head", help="target revision (default: head)")
    db_up.set_defaults(handler=_db_upgrade)
    db_down = db_commands.add_parser("downgrade", help="undo migrations")
    db_down.add_argument("revision", help="target revision: an id, -1 for one step, or base")
    db_down.set_defaults(handler=_db_downgrade)

    keys = subparsers.add_parser("keys", help="API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = key_commands.add_parser(
        "create", help="create an API key for a project (created if new) and print it once"
    )
    create.add_argument("--project", required=True, help="project name")
    create.set_defaults(handler=_keys_create)

    register_client(subparsers)


def main(argv: list[str] | None = None) -> int:
    """Run these commands without the `cringe` entry point: python -m service.cli ..."""
    parser = argparse.ArgumentParser(prog="python -m service.cli")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
