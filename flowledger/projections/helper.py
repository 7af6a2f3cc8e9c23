"""A second process for a rebuild: it rebuilds some of the views while the first rebuilds
the others, so that a rebuild uses two cores.

On a SQLite store each process folds its own views into a staging file of its own with
:meth:`Projector.rebuild_staged`, and replaces the store's views by them when it is done:
the two never wait for each other's lock while folding. On PostgreSQL each folds its own
views in place, under each view's advisory lock. Exactly-once holds as in any catch-up: a
view's rows and position go into the store together, in one transaction.

The store (a SQLite file, or PostgreSQL) and, for `flowledger rebuild --into FILE.db`, the
log's store reach the helper in its environment (:data:`STORE_ENV`, :data:`SOURCE_ENV`),
never on its command line: a PostgreSQL URL may hold a password, and a command line shows
to every user of the machine. The helper is a fresh interpreter, not a fork: a forked
child must not inherit open connections.

    FLOWLEDGER_REBUILD_STORE=STORE [FLOWLEDGER_REBUILD_SOURCE=LOG] \
        python -m flowledger.projections.helper --page-size N --parent PID VIEW...

``--parent`` is the rebuilding process's pid, which the helper checks its parent against: a
parent read only once the helper runs would be whatever adopted it, had the rebuilding
process died in the meantime.
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

STORE_ENV = "FLOWLEDGER_REBUILD_STORE"
"""The environment variable that gives a helper the store whose views it rebuilds."""
SOURCE_ENV = "FLOWLEDGER_REBUILD_SOURCE"
"""The environment variable that gives a helper the log's store, where it is another."""
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
    """Start a helper rebuilding ``views``, or None where there can be none."""
    store = backend.reopen_url()
    log = source.reopen_url() if source is not backend else store
    if not views or store is None or log is None or not sys.executable:
        return None
    import flowledger

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(flowledger.__file__)))
    env = dict(os.environ)
    # The helper must import this very flowledger, whichever way it was found.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env[STORE_ENV] = store
    env.pop(SOURCE_ENV, None)
    if source is not backend:
        env[SOURCE_ENV] = log
    lock_timeout = getattr(backend, "lock_timeout", 60.0)
    command = _command(views, page_size, lock_timeout)
    errors = None
    try:
        # No usable temporary folder is no reason to fail the rebuild: it just has no helper.
        errors = tempfile.TemporaryFile()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, env=env
        )
    except OSError as e:
        if errors is not None:
            errors.close()
        _log.warning("could not start a rebuild helper (%s); rebuilding every view here", e)
        return None
    return Helper(process, errors)


def _command(views: Sequence[View], page_size: int, lock_timeout: float) -> list[str]:
    """The helper's command line."""
    command = [sys.executable, "-m", __name__, "--page-size", str(page_size), "--lock-timeout", str(lock_timeout)]
    # This process's pid, for the helper to check its parent against (see :func:`_end_with_parent`).
    command += ["--parent", str(os.getpid())]
    return [*command, *(v.name for v in views)]


def main(argv: Sequence[str] | None = None) -> None:
    """Rebuild the named views of the store :data:`STORE_ENV` names, in this process alone."""
    from flowledger.projections.projector import Projector
    from flowledger.store import open_backend

    parser = argparse.ArgumentParser(prog="python -m flowledger.projections.helper")
    parser.add_argument("views", nargs="+")
    parser.add_argument("--page-size", type=int, required=True)
    parser.add_argument("--lock-timeout", type=float, default=60.0)
    parser.add_argument("--parent", type=int, help="the rebuilding process's pid (default: this one's parent now)")
    args = parser.parse_args(argv)
    store, log = os.environ.get(STORE_ENV), os.environ.get(SOURCE_ENV)
    if not store:
        parser.error(f"no store: set {STORE_ENV}")
    # Stopped by the rebuilding process: unwind, so that what it was writing is undone.
    signal.signal(signal.SIGTERM, _exit)
    _end_with_parent(args.parent)
    backend = open_backend(store, lock_timeout=args.lock_timeout, create=False)
    source = None
    try:
        source = open_backend(log, lock_timeout=args.lock_timeout, create=False) if log else None
        projector = Projector(backend, source=source)
        projector.rebuild_alone([projector.view(name) for name in args.views], page_size=args.page_size)
    finally:
        backend.close()
        if source is not None:
            source.close()


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _end_with_parent(parent: int | None = None) -> None:
    """Be stopped (SIGTERM) when the rebuilding process ``parent`` ends, however it ends: a
    helper left running would merge its views after its rebuild was given up. Where it has
    ended already, exit now. (The request is Linux's; elsewhere only that check is made.)"""
    if parent is None:
        parent = os.getppid()  # started by hand: its parent is whoever started it
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the rebuilding process stops its helper itself when it can
    # After the request: a parent that dies from here on sends the signal.
    if os.getppid() != parent:
        raise SystemExit(128 + signal.SIGTERM)  # it ended before the request was made


if __name__ == "__main__":
    main()
