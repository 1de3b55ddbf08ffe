"""Runs one attempt's command and records its exit code in a file.

The local executor starts attempts through this wrapper in a new session, so an attempt
outlives a restart of the API process. The exit code survives too, because a restarted
dispatcher cannot wait() for a process it did not start, but it can read the file.

    python -m service.run_wrapper --exit-file PATH -- COMMAND [ARG ...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType


def write_exit_file(path: Path, exit_code: int) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(
        json.dumps({"exit_code": exit_code, "ended_at": datetime.now(UTC).isoformat()}),
        encoding="utf-8",
    )
    os.replace(staging, path)  # atomic, so a reader never sees half a file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.run_wrapper")
    parser.add_argument("--exit-file", required=True, type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")

    child: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        # The executor signals the whole process group. Forwarding covers a direct kill of
        # this wrapper, and a signal that arrives before the child exists is kept for it.
        if child is None:
            pending.append(signum)
        elif child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    child = subprocess.Popen(command)
    for signum in pending:
        child.send_signal(signum)
    exit_code = child.wait()
    write_exit_file(args.exit_file, exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
