"""One run's outputs appear together at its end, or not at all.

A run writes every output into a hidden staging folder and :meth:`StagedOutputs.commit` moves
them into the output folder when the run has succeeded; a failed or stopped run removes the
staging folder. So a PACS bridge polling the folder, or a user, never sees half of a run: not a
SEG without its report, not the first case of a datalist whose third case failed.

How the outputs appear:

* an output folder that does not exist yet is the staging folder itself, renamed into place in
  one step (a ``rename(2)``: all the files appear at once);
* into an existing folder (earlier results, a mounted volume) the files are renamed one by one,
  in the order given, with SIGTERM, SIGINT and SIGHUP held until the last one is in place. Only
  a SIGKILL or a power cut in the microseconds between two renames can leave some of them.

A run killed outright (SIGKILL, or Holoscan's forced exit three seconds after a SIGTERM, which
skips every Python clean-up) cannot remove its staging folder itself: a small watchdog process,
started with the folder, removes it when the run's process is gone and the folder is still there.
Should the watchdog die too (a whole container stopped), the next run into the same folder
removes staging folders whose process no longer exists.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import UserError

__all__ = ["StagedOutputs", "stage_outputs", "stop_on_signals", "Stopped"]

_PREFIX = ".diffugts-staging-"
#: The watchdog: ``python -S -c WATCHDOG FOLDER PID`` removes FOLDER once process PID is gone
#: (the watchdog is then re-parented) and exits as soon as FOLDER no longer exists (committed).
_WATCHDOG = """
import os, shutil, sys, time
folder, parent = sys.argv[1], int(sys.argv[2])
while os.path.isdir(folder):
    if os.getppid() != parent:
        shutil.rmtree(folder, ignore_errors=True)
        break
    time.sleep(0.2)
"""
_SIGNALS = tuple(s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)) if s is not None)


class Stopped(SystemExit):
    """Raised in the main thread when a scheduler's signal (SIGTERM, SIGHUP, SIGINT) arrives.

    A ``SystemExit`` with the message as its code: Python prints it and exits with status 1, and
    every ``finally`` and clean-up on the way runs, which is what removes the partial outputs.
    """


def stage_outputs(destination: str | os.PathLike) -> StagedOutputs:
    """:class:`StagedOutputs` for ``destination``; the bundle and the app both start a run with it.

    Raises:
        UserError: naming the folder and why it cannot hold the outputs (a file of that name, no
            permission, a read-only or full file system), before anything has run.
    """
    destination = Path(destination)
    # mkdir would say "File exists" for a file on the way, which sends the user looking for a folder.
    blocking = next((p for p in (destination, *destination.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserError(f"cannot write in the output folder {destination}: {blocking} is a file")
    try:
        return StagedOutputs(destination)
    except OSError as error:
        raise UserError(f"cannot write in the output folder {destination}: {error.strerror or error}") from None


@contextlib.contextmanager
def stop_on_signals(prefix: str = "error:") -> Iterator[None]:
    """Turn SIGTERM, SIGHUP and SIGINT into :class:`Stopped` inside the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(number: int, frame: object) -> None:
        raise Stopped(f"{prefix} stopped by {signal.Signals(number).name}; no output was written")

    previous = {number: signal.signal(number, stop) for number in _SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a held signal is delivered here


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned_staging(folder: Path) -> None:
    """Remove staging folders in (or beside) ``folder`` whose run's process no longer exists."""
    for parent, pattern in ((folder, rf"{re.escape(_PREFIX)}(\d+)-"), (folder.parent, rf"\.{re.escape(folder.name)}{re.escape(_PREFIX)}(\d+)-")):
        if not parent.is_dir():
            continue
        for entry in parent.iterdir():
            match = re.match(pattern, entry.name)
            if match and entry.is_dir() and not _pid_alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)


class StagedOutputs:
    """A staging folder for one run's outputs, to be committed into ``destination`` or discarded.

    Args:
        destination: the output folder. When it does not exist, its parent must be writable
            (the staging folder is created beside it, then renamed to it).
    """

    def __init__(self, destination: str | os.PathLike) -> None:
        self.destination = Path(destination)
        remove_abandoned_staging(self.destination)
        self._renames_folder = not self.destination.exists()
        if self._renames_folder:
            self.destination.parent.mkdir(parents=True, exist_ok=True)
            parent, prefix = self.destination.parent, f".{self.destination.name}{_PREFIX}{os.getpid()}-"
        else:
            parent, prefix = self.destination, f"{_PREFIX}{os.getpid()}-"
        self.folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        os.chmod(self.folder, 0o777 & ~_umask())  # as a folder made by mkdir would be
        # Its own session: a signal sent to the run's process group does not stop the watchdog too.
        self._watchdog = subprocess.Popen(
            [sys.executable, "-S", "-c", _WATCHDOG, str(self.folder), str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def path(self, name: str) -> Path:
        """Where the output ``name`` is written during the run."""
        return self.folder / name

    def final(self, name: str) -> Path:
        """Where the output ``name`` appears once committed."""
        return self.destination / name

    def commit(self, order: Sequence[str] = ()) -> list[Path]:
        """Move every staged file into the destination; those named in ``order`` last, in that order."""
        names = sorted(p.name for p in self.folder.iterdir())
        names = [n for n in names if n not in order] + [n for n in order if n in names]
        with _signals_held():
            if self._renames_folder:
                try:
                    os.rename(self.folder, self.destination)
                    self._stop_watchdog()
                    return [self.destination / n for n in names]
                except OSError as error:  # created meanwhile (another run): move the files instead
                    if error.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                        raise
            for name in names:
                os.replace(self.folder / name, self.destination / name)
            shutil.rmtree(self.folder, ignore_errors=True)
        self._stop_watchdog()
        return [self.destination / n for n in names]

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self._stop_watchdog()

    def _stop_watchdog(self) -> None:
        self._watchdog.terminate()  # nothing left to watch
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._watchdog.wait(timeout=5)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
