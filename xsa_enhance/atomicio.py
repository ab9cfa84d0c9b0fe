"""The one way this package writes a file so that readers never see half of it.

Every writer of a finished file (FITS products, PNGs, weights, registries, calibration tables,
event files) writes to a hidden temporary file in the target's own folder and renames it onto
the target with :func:`os.replace`, which is atomic on POSIX file systems: a reader, or a
process killed mid-write, sees the old file or the new one, never a torn one. A failed write
removes its temporary file and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to (re)write. Its folder must exist.
    suffix : str, optional
        Ending of the temporary file's name (some writers choose a format by it).

    Yields
    ------
    pathlib.Path
        Where to write. It exists (empty) when yielded, so writers that refuse to overwrite
        must be told to (``overwrite=True``).

    Raises
    ------
    OSError
        If the temporary file cannot be created or renamed; the target is then unchanged.

    Notes
    -----
    If the body raises, the temporary file is removed and the exception propagates.
    """
    out = Path(path)
    tmp = _create_temporary(out, suffix)
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temporary(out: Path, suffix: str) -> Path:
    """A new empty file ``.<name>.<random><suffix>`` beside ``out``, mode 0666 less the umask.

    Not :func:`tempfile.mkstemp`: its files are private (0600), and a finished product,
    weights file or registry must be as readable as any other file the user writes (shared
    weight folders on clusters).
    """
    for _ in range(100):
        tmp = out.parent / f".{out.name}.{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{out.parent}: no free temporary name for {out.name}")


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path : str or os.PathLike
        The file to (re)write.
    data : bytes
        Its whole content.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    out = Path(path)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return out


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path : str or os.PathLike
        The file to (re)write.
    text : str
        Its whole content.
    encoding : str, optional
        Text encoding (UTF-8).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    return write_bytes_atomic(path, text.encode(encoding))
