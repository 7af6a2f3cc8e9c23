"""A second process for a rebuild: it folds some of the views while the first folds the
others, so that a rebuild uses two cores.

Each process folds its own views into a staging file of its own with
:meth:`Projector.rebuild_staged`, and replaces the store's views by them when it is done:
the two never wait for each other's lock while folding. Exactly-once holds as in any
catch-up: a view's rows and position go into the store together, in one transaction.

Only for SQLite files (both the views' store and the log's): a new process can open a
file by its path, while a PostgreSQL store's URL may carry a password the backend no
longer has. The helper is a fresh interpreter, not a fork: a forked child must not
inherit open SQLite connections.

    python -m flowledger.projections.helper STORE [--source LOG] --page-size N VIEW...
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowledger.projections.base import View
    from flowledger.store.backend import SQLBackend

HELPER_VIEWS = frozenset({"deliveries"})
"""The views a helper folds (of those being rebuilt); the rebuilding process folds the rest."""

_log = logging.getLogger(__name__)


def split_views(views: Sequence[View]) -> tuple[list[View], list[View]]:
    """The views the rebuilding process folds, and those a helper may fold (maybe none)."""
    mine = [v for v in views if v.name not in HELPER_VIEWS]
    theirs = [v for v in views if v.name in HELPER_VIEWS]
    if not mine:
        return theirs, []  # one group only: nothing to share
    return mine, theirs


class Helper:
    """A running helper process."""

    def __init__(self, process: subprocess.Popen[bytes], errors: IO[bytes]) -> None:
        self.process = process
        """The process."""
        self._errors = errors

    def wait(self) -> bool:
        """Wait for the helper to end; whether it folded all its views."""
        code = self.process.wait()
        self._errors.seek(0)
        text = self._errors.read().decode(errors="replace").strip()
        self._errors.close()
        if code != 0:
            _log.warning("rebuild helper ended with code %s; folding its views here: %s", code, text[-2000:])
        return code == 0

    def stop(self) -> None:
        """End the helper now (what it was writing to the store rolls back) and wait for it."""
        self.process.terminate()
        self.process.wait()
        self._errors.close()


def start_helper(backend: SQLBackend, source: SQLBackend, views: Sequence[View], page_size: int) -> Helper | None:
    """Start a helper folding ``views``, or None where there can be none."""
    paths = [_sqlite_path(backend), _sqlite_path(source)]
    if not views or None in paths or not sys.executable:
        return None
    import flowledger

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(flowledger.__file__)))
    env = dict(os.environ)
    # The helper must import this very flowledger, whichever way it was found.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    lock_timeout = getattr(backend, "lock_timeout", 60.0)
    command = _command(str(paths[0]), str(paths[1]) if source is not backend else None, views, page_size, lock_timeout)
    errors = tempfile.TemporaryFile()
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, env=env
        )
    except OSError as e:
        errors.close()
        _log.warning("could not start a rebuild helper (%s); folding every view here", e)
        return None
    return Helper(process, errors)


def _command(store: str, source: str | None, views: Sequence[View], page_size: int, lock_timeout: float) -> list[str]:
    """The helper's command line."""
    command = [sys.executable, "-m", __name__, store, "--page-size", str(page_size), "--lock-timeout", str(lock_timeout)]
    if source is not None:
        command += ["--source", source]
    return [*command, *(v.name for v in views)]


def _sqlite_path(backend: Any) -> str | None:
    """The file of a SQLite store another process can open (None for any other store)."""
    from flowledger.store.sqlite import SQLiteBackend

    if not isinstance(backend, SQLiteBackend) or backend.path == ":memory:":
        return None
    return os.path.abspath(backend.path)


def main(argv: Sequence[str] | None = None) -> None:
    """Rebuild the named views of a store through a staging file of this process's own."""
    from flowledger.projections.projector import Projector
    from flowledger.store.sqlite import SQLiteBackend

    parser = argparse.ArgumentParser(prog="python -m flowledger.projections.helper")
    parser.add_argument("store")
    parser.add_argument("views", nargs="+")
    parser.add_argument("--source", default=None)
    parser.add_argument("--page-size", type=int, required=True)
    parser.add_argument("--lock-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    # Stopped by the rebuilding process: unwind, so that the staging file is removed.
    signal.signal(signal.SIGTERM, _exit)
    backend = SQLiteBackend(args.store, lock_timeout=args.lock_timeout, create=False)
    source = SQLiteBackend(args.source, lock_timeout=args.lock_timeout, create=False) if args.source else None
    try:
        projector = Projector(backend, source=source)
        projector.rebuild_staged([projector.view(name) for name in args.views], page_size=args.page_size)
    finally:
        backend.close()
        if source is not None:
            source.close()


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
