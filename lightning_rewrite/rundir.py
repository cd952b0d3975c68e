"""A run directory written all at once: everything goes into a hidden temporary directory
beside ``out``, which replaces ``out`` only when the command succeeds."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .atomic import current_umask


@contextmanager
def run_directory(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it becomes ``out`` (an older ``out`` is
    removed only after the new one is in place); on failure it is deleted and ``out`` is untouched."""
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
