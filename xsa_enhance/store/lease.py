"""A writer lease on a product store: one writing run at a time, also on NFS and Lustre.

The lease is a small JSON file, ``<store>/xsa-lease.json``, naming its holder (run id, user,
host, pid, when it was taken). Everything that writes the store (``xsa-enhance run``,
``xsa-enhance repair --apply``) holds it; the workers of the holding run write their own
groups under it, as before.

How it is taken, without relying on ``flock``/``fcntl`` locks (which NFS gives only through
a lock daemon and Lustre only when mounted with ``-o flock``):

1. the candidate writes its record into a file of its own, ``xsa-lease.json.<host>.<pid>.<rand>``;
2. it ``link()``\\ s that file to ``xsa-lease.json``. ``link`` either creates the name or fails
   with ``EEXIST``, atomically, on local file systems, NFS (v2 onwards) and Lustre. Because an
   NFS reply to a retransmitted ``LINK`` can be lost, success is also accepted when the link
   count of the private file became 2 (the classic NFS-safe lock-file recipe);
3. the private file is removed.

The holder proves it is alive by a *heartbeat*: a thread sets the lease file's modification
time every ``heartbeat_s`` seconds. Times are compared on the file server's clock: the age of
the heartbeat is the mtime of a freshly touched probe file minus the mtime of the lease, so
clients with skewed clocks agree. A lease is *stale* when its heartbeat is older than
``stale_s`` (default 120 s), or at once when it was taken on this host by a process that no
longer exists. A stale lease is taken over by ``rename()``-ing it to a private name (atomic:
of several candidates exactly one succeeds) and checking that the file renamed is the one
judged stale; the take-over is logged with the previous holder.

The heartbeat thread also checks that the lease file still names its holder; when it does
not (taken over after a very long stall), :meth:`StoreLease.check` raises and the run stops
before its next catalog commit.

Stores given as fsspec URLs (object stores) have no atomic create-if-absent operation that
works everywhere: no lease is taken for them and a warning says so.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from xsa_enhance.errors import XsaError

__all__ = ["LEASE_NAME", "LeaseHeldError", "LeaseLostError", "StoreLease", "read_lease",
           "local_store_path"]

logger = logging.getLogger(__name__)

#: File name of the lease inside the store folder.
LEASE_NAME = "xsa-lease.json"


class LeaseHeldError(XsaError):
    """Another run holds the store's writer lease (message: one line naming the holder)."""


class LeaseLostError(XsaError):
    """The lease of this run was taken over by another (this run stalled past ``stale_s``)."""


def local_store_path(url: str | os.PathLike[str]) -> Path | None:
    """The local folder of a store URL, or None for a remote (fsspec) URL."""
    text = os.fspath(url)
    if text.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(text).path))
    if "://" in text:
        return None
    return Path(text)


def _utc(ts: float | None = None) -> str:
    t = _dt.datetime.fromtimestamp(time.time() if ts is None else ts, _dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def read_lease(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The lease record of a store folder (with ``mtime``), or None when nobody holds it."""
    path = Path(folder) / LEASE_NAME
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except ValueError:
        doc = {"token": "", "damaged": True}
    doc["mtime"] = st.st_mtime
    doc["ino"] = st.st_ino
    return doc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(doc: dict[str, Any]) -> str:
    """``run R (user@host pid N, since T)`` for a lease record."""
    if doc.get("damaged"):
        return "an unreadable lease record"
    return (f"run {doc.get('run_id', '?')} ({doc.get('user', '?')}@{doc.get('host', '?')} "
            f"pid {doc.get('pid', '?')}, since {doc.get('acquired', '?')})")


class StoreLease:
    """The writer lease of one local store folder.

    Parameters
    ----------
    folder : str or os.PathLike
        The store folder (created when missing).
    run_id : str
        Identifier of the holding run (written into the lease).
    heartbeat_s : float
        Seconds between heartbeats.
    stale_s : float
        A heartbeat older than this marks the lease stale (take-over allowed).

    Use :meth:`acquire` (or ``with StoreLease(...).acquire(...)``) and :meth:`release`.
    """

    def __init__(self, folder: str | os.PathLike[str], *, run_id: str,
                 heartbeat_s: float = 10.0, stale_s: float = 120.0) -> None:
        if stale_s <= heartbeat_s:
            raise ValueError("stale_s must be longer than heartbeat_s")
        self.folder = Path(folder)
        self.path = self.folder / LEASE_NAME
        self.run_id = str(run_id)
        self.heartbeat_s = float(heartbeat_s)
        self.stale_s = float(stale_s)
        self.token = uuid.uuid4().hex
        self.held = False
        self.lost: str | None = None
        self.took_over: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ helpers
    def _record(self) -> dict[str, Any]:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name in some containers
            user = str(os.getuid())
        return {"token": self.token, "run_id": self.run_id, "user": user,
                "host": socket.gethostname(), "pid": os.getpid(), "acquired": _utc()}

    def _private(self, what: str) -> Path:
        return self.folder / (f"{LEASE_NAME}.{what}.{socket.gethostname()}.{os.getpid()}."
                              f"{uuid.uuid4().hex[:8]}")

    def fs_now(self) -> float:
        """The file server's current time (mtime of a freshly written probe file)."""
        probe = self._private("clock")
        try:
            probe.write_bytes(b"")
            return probe.stat().st_mtime
        finally:
            try:
                probe.unlink()
            except FileNotFoundError:
                pass

    def _stale_reason(self, doc: dict[str, Any]) -> str | None:
        age = self.fs_now() - float(doc["mtime"])
        if age > self.stale_s:
            return f"its last heartbeat was {age:.0f} s ago (stale after {self.stale_s:.0f} s)"
        if doc.get("host") == socket.gethostname() and isinstance(doc.get("pid"), int):
            if not _pid_alive(int(doc["pid"])):
                return f"process {doc['pid']} on this host no longer exists"
        return None

    def _try_create(self) -> bool:
        tmp = self._private("new")
        tmp.write_text(json.dumps(self._record()), encoding="utf-8")
        try:
            try:
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError:
                # NFS: the LINK may have succeeded although its reply was lost
                if tmp.stat().st_nlink == 2:
                    return True
                raise
        finally:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass

    def _take_over(self, doc: dict[str, Any]) -> bool:
        """Move a stale lease aside; True when this process moved exactly that lease."""
        aside = self._private("stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False  # someone else moved it first
        try:
            st = aside.stat()
            moved = json.loads(aside.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            moved = {"token": ""}
            st = None
        same = (st is not None and st.st_ino == doc.get("ino")
                and moved.get("token", "") == doc.get("token", ""))
        if not same:
            # a fresh lease was created between our read and the rename: give it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                logger.warning("lease of %s: could not give back a lease taken concurrently",
                               self.folder)
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    # ------------------------------------------------------------------ public
    def acquire(self, *, wait_s: float | None = 0.0, poll_s: float = 2.0) -> "StoreLease":
        """Take the lease, waiting up to ``wait_s`` seconds (None: forever) for the holder.

        Raises
        ------
        LeaseHeldError
            Another live run holds it (after waiting ``wait_s``): one line naming the holder.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = None if wait_s is None else time.monotonic() + float(wait_s)
        announced = False
        while True:
            if self._try_create():
                break
            doc = read_lease(self.folder)
            if doc is None:
                continue  # released in between: try again at once
            reason = self._stale_reason(doc)
            if reason is not None:
                if self._take_over(doc):
                    self.took_over = doc
                    logger.warning("store %s: taking over the writer lease of %s: %s",
                                   self.folder, describe_holder(doc), reason)
                continue
            if deadline is not None and time.monotonic() >= deadline:
                waited = f" after waiting {wait_s:g} s" if wait_s else ""
                raise LeaseHeldError(
                    f"{self.folder}: store is being written by {describe_holder(doc)}"
                    f"{waited}; wait for it to finish or pass --wait-for-lock")
            if not announced:
                logger.warning("store %s is being written by %s; waiting for it",
                               self.folder, describe_holder(doc))
                announced = True
            time.sleep(poll_s if deadline is None
                       else max(0.01, min(poll_s, deadline - time.monotonic())))
        self.held = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="xsa-lease-heartbeat",
                                        daemon=True)
        self._thread.start()
        logger.info("store %s: writer lease taken by run %s", self.folder, self.run_id)
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self.heartbeat()

    def heartbeat(self) -> None:
        """Refresh the lease's mtime; notes the loss when the file names another holder."""
        doc = read_lease(self.folder)
        for _ in range(3):  # a take-over attempt by another run moves the file briefly
            if doc is not None:
                break
            time.sleep(0.5)
            doc = read_lease(self.folder)
        if doc is None or doc.get("token") != self.token:
            self.lost = (f"{self.folder}: the writer lease of run {self.run_id} was taken "
                         f"over by {describe_holder(doc) if doc else 'nobody (removed)'}")
            logger.error("%s", self.lost)
            self._stop.set()
            return
        try:
            os.utime(self.path, None)
        except OSError as exc:
            logger.warning("store %s: lease heartbeat failed: %s", self.folder, exc)

    def check(self) -> None:
        """Raise :class:`LeaseLostError` when the lease was taken over."""
        if self.lost:
            raise LeaseLostError(self.lost + "; this run stops (a rerun resumes)")

    def release(self) -> None:
        """Stop the heartbeat and remove the lease file if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if not self.held:
            return
        self.held = False
        doc = read_lease(self.folder)
        if doc is not None and doc.get("token") == self.token:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "StoreLease":
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
