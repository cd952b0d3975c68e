"""Files named on the command line, checked before they are read: one line that says what the
path is (missing, a directory, a symlink loop) and what it should be."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import RewriteError


def existing_file(path: str | os.PathLike, what: str, wanted: str) -> Path:
    """``path`` when it names a readable regular file; else one error line naming ``what`` it is
    for and ``wanted``, what to give instead."""
    p = Path(path).expanduser()
    try:
        p.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RewriteError(f"{what} {os.fspath(path)!r} is a symlink loop; give {wanted}") from None
        if e.errno == errno.ENAMETOOLONG:
            raise RewriteError(f"{what} path is too long ({len(os.fspath(path)):,} characters); give {wanted}") from None
        raise RewriteError(f"{what} {os.fspath(path)!r} does not exist; give {wanted}") from None
    if p.is_dir():
        raise RewriteError(f"{what} {os.fspath(path)!r} is a directory; give {wanted}")
    if not p.is_file():
        raise RewriteError(f"{what} {os.fspath(path)!r} is not a regular file; give {wanted}")
    if not os.access(p, os.R_OK):
        raise RewriteError(f"{what} {os.fspath(path)!r} is not readable by this user; give {wanted}")
    return p
