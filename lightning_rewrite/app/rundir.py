"""Run directories: written all at once, and only where the tool may write.

Every run directory carries a marker (``.lightning_rewrite.json``: command, time, version, and
the manifest of what the run wrote). The tool replaces only a directory with that marker, and only
while it holds nothing but what the manifest names: a file the user put there, or a run directory
nested in it, is named in a refusal (``overwrite`` does not change that). An existing directory
without a marker, or a file, is refused before any work. A run writes into a hidden temporary
directory beside ``out`` (marked too, with its process id), which replaces ``out`` only when the command succeeds; a temporary
left by a killed run is removed by the next run into the same place — only temporaries the tool
marked, and only when their process is gone.

A run directory that holds the results of other commands (``test/``, ``sample/``, ``select/``:
subdirectories with their own marker) is not replaced unless ``overwrite`` is given: those
results describe the edit being replaced, and keeping them beside a new one would misreport it.
Versioned directories (Lightning's ``version_N``) would keep every edited generator on disk
instead; a refusal naming what would be lost costs the user one word.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..atomic import current_umask
from ..errors import RewriteError

MARKER = ".lightning_rewrite.json"
#: W&B's directory in a run directory: its offline runs wait there to be synced (``wandb sync``
#: writes into them), so a replaced run's are carried into the new run directory, never deleted.
LOGS = "wandb"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[^.]+\.(tmp|old)$")


def _marker(path: Path) -> dict | None:
    """The marker of a run directory the tool wrote, else None."""
    try:
        data = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == "lightning-rewrite" else None


def is_run_directory(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory this tool wrote (it carries the marker)."""
    p = Path(path)
    return p.is_dir() and _marker(p) is not None


def _debris(marker: dict) -> bool:
    """Whether a marker is a killed run's temporary (the tool's own leftovers, safe to remove)."""
    return bool(marker.get("temporary")) and not _alive(marker.get("pid"))


def other_results(path: Path, command: str) -> list[str]:
    """Subdirectories of the run directory ``path`` written by other commands than ``command``."""
    return sorted(f"{p.name}/" for p in path.iterdir() if p.is_dir() and not p.is_symlink()
                  and (m := _marker(p)) is not None and m.get("command") != command and not _debris(m))


def _walk(directory: Path) -> tuple[list[str], list[tuple[Path, dict]]]:
    """What ``directory`` holds as relative POSIX paths (a directory ends in ``/``), leaving out
    its marker and what lies inside run directories nested in it; and those nested run
    directories with their markers (not descended into: they carry their own manifest)."""
    found, nested = [], []
    for root, dirs, files in os.walk(directory):
        here = Path(root).relative_to(directory)
        for d in list(dirs):
            marker = None if (Path(root) / d).is_symlink() else _marker(Path(root) / d)
            if marker is not None:
                dirs.remove(d)
                nested.append((Path(root) / d, marker))
            else:
                found.append(f"{(here / d).as_posix()}/")
        found += [(here / f).as_posix() for f in files if not (here == Path(".") and f == MARKER)]
    return sorted(found), nested


def manifest(directory: Path) -> list[str]:
    """The manifest a marker records: every path in ``directory`` outside nested run directories."""
    return _walk(directory)[0]


def foreign(path: Path, command: str) -> list[str]:
    """What the run directory ``path`` holds that its run did not write: entries its manifest does
    not name (the user's), and run directories nested in it that are not another command's
    results (those :func:`other_results` names) nor a killed run's temporary (the tool's own
    debris). Only the nested run directories for a marker from before manifests."""
    written = (_marker(path) or {}).get("files")
    entries, runs = _walk(path)
    results = set(other_results(path, command))
    nested = [f"{p.relative_to(path).as_posix()}/" for p, marker in runs if not _debris(marker)]
    nested = [n for n in nested if n not in results]
    if not isinstance(written, list):
        return nested
    known = set(written)
    theirs = [e for e in entries if e not in known and not e.startswith(f"{LOGS}/")]
    top = [e for e in theirs if not any(e != o and e.startswith(o) for o in theirs if o.endswith("/"))]
    return sorted(top + [f"{n} (a run directory of its own)" for n in nested])


def _listed(names: list[str], most: int = 6) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def other_writers(target: Path) -> list[dict]:
    """The markers of runs of this tool on this machine, other than this process, writing
    ``target`` now (their temporaries beside it, whose process is alive)."""
    found = []
    if not target.parent.is_dir():
        return found
    for p in target.parent.iterdir():
        m = _TEMPORARY.match(p.name)
        if not (m and m["name"] == target.name and p.name.endswith(".tmp") and p.is_dir() and not p.is_symlink()):
            continue
        marker = _marker(p)
        if (marker and marker.get("temporary") and marker.get("pid") != os.getpid() and _alive(marker.get("pid"))
                and marker.get("host", socket.gethostname()) == socket.gethostname()):
            found.append(marker)
    return found


def check_out(out: str | os.PathLike, command: str, overwrite: bool = False, replacing: bool = True) -> Path:
    """``out`` if the tool may write there: absent, or a run directory it wrote (holding no other
    command's results unless ``overwrite``, and, when ``replacing`` it, nothing its run did not
    write), and no other run of the tool writing it now. Otherwise one error line; nothing is
    touched."""
    target = Path(out)
    busy = other_writers(target) if replacing else []
    if busy:
        raise RewriteError(f"out={os.fspath(out)} is being written by another lightning-rewrite {busy[0].get('command')} "
                           f"(pid {busy[0].get('pid')}, started {busy[0].get('time')}); wait for it to finish, or give "
                           "another out=")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise RewriteError(f"out={os.fspath(out)} is an existing file, not a run directory; "
                           "give out= a new directory (the tool never replaces what it did not write)")
    if target.is_dir():
        if _marker(target) is None:
            raise RewriteError(f"out={os.fspath(out)} is an existing directory that lightning-rewrite did not write "
                               f"(it has no {MARKER}); give out= a new directory, the tool never replaces what it did not write")
        theirs = foreign(target, command) if replacing else []
        if theirs:
            raise RewriteError(f"out={os.fspath(out)} holds what lightning-rewrite did not write there "
                               f"({_listed(theirs)}); move it out, or give another out= (the tool never deletes "
                               "what it did not write, overwrite=true included)")
        kept = other_results(target, command)
        if kept and not overwrite and replacing:
            raise RewriteError(f"out={os.fspath(out)} holds results of other commands ({', '.join(kept)}) that a new "
                               f"{command} would delete; give overwrite=true to replace them, or another out=")
    parent = _existing_ancestor(target.parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RewriteError(f"cannot write out={os.fspath(out)}: {parent} is not writable by this user; "
                           "give out= a directory you may write")
    return target


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Temporaries beside ``target`` left by killed runs of this tool (marked, process gone)."""
    removed = []
    if not target.parent.is_dir():
        return removed
    for p in target.parent.iterdir():
        m = _TEMPORARY.match(p.name)
        if not (m and m["name"] == target.name and p.is_dir() and not p.is_symlink()):
            continue
        marker = _marker(p)  # the temporary's own marker: a run directory inside it does not make it removable
        if marker is None or not marker.get("temporary") or _alive(marker.get("pid")):
            continue
        if marker.get("host", socket.gethostname()) != socket.gethostname():
            continue  # its process may be alive on the machine that wrote it (a shared file system)
        if p.name.endswith(".old") and not target.exists() and _marker(p / target.name) is not None:
            os.replace(p / target.name, target)  # killed between its two renames: the previous run goes back
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def write_marker(directory: Path, command: str, temporary: bool = False, files: list[str] | None = None) -> None:
    """The marker; ``files``: the manifest of what the run wrote (a finished run directory)."""
    record = {"tool": "lightning-rewrite", "command": command, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "pid": os.getpid(), "host": socket.gethostname(), "temporary": temporary}
    if files is not None:
        record["files"] = files
    from ..version import __version__

    record["version"] = __version__
    (directory / MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def claim_directory(out: str | os.PathLike, command: str, legacy: tuple[str, ...] = ()) -> Path:
    """A directory a long, resumable command writes in place (``pretrain``): created with the
    marker, or one it wrote before (marked, or holding every file of ``legacy``, the layout it
    left before directories were marked); anything else is refused."""
    target = Path(out).expanduser()
    if target.is_dir() and _marker(target) is None and legacy and all((target / f).is_file() for f in legacy):
        write_marker(target, command)
    target = check_out(target, command, overwrite=True, replacing=False)
    try:
        target.mkdir(parents=True, exist_ok=True)
        if _marker(target) is None:
            write_marker(target, command)
    except OSError as e:
        raise RewriteError(f"cannot write out={os.fspath(out)}: {e.strerror or e}") from None
    return target


@contextmanager
def run_directory(out: str | os.PathLike, command: str, overwrite: bool = False,
                  nested: bool = False) -> Iterator[Path]:
    """Yield a fresh, marked temporary directory; on success it becomes ``out`` (an older run
    directory of this tool is removed only after the new one is in place); on failure it is
    deleted and ``out`` is untouched. ``out`` must pass :func:`check_out`. ``nested``: ``out``
    is a command's results inside a run directory (``test/``): a parent the run creates is
    marked as a run directory on success, and removed again on failure."""
    target = check_out(out, command, overwrite)
    created = not target.parent.exists()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as e:
        raise RewriteError(f"cannot write out={os.fspath(out)}: {e.strerror or e}") from None
    old = None
    try:
        write_marker(tmp, command, temporary=True)
        yield tmp
        check_out(target, command, overwrite)  # a directory that appeared meanwhile is not replaced either
        write_marker(tmp, command, files=manifest(tmp))
        os.chmod(tmp, 0o777 & ~current_umask())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            write_marker(old, command, temporary=True)
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            _carry_logs(old / target.name, target)
        if nested and created:
            write_marker(target.parent, command, files=manifest(target.parent))
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if old is not None and not target.exists() and (old / target.name).is_dir():
            os.replace(old / target.name, target)  # the previous run back in place, not left in a temporary
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        if nested and created and target.parent.is_dir() and not any(target.parent.iterdir()):
            target.parent.rmdir()
        raise


def _carry_logs(previous: Path, new: Path) -> None:
    """The previous run's W&B runs into the new run directory's ``wandb/`` (renames on one file
    system): an offline run not yet synced is the user's to upload or remove."""
    runs = previous / LOGS
    if not runs.is_dir() or runs.is_symlink():
        return
    (new / LOGS).mkdir(exist_ok=True)
    for child in runs.iterdir():
        if not (new / LOGS / child.name).exists():
            os.replace(child, new / LOGS / child.name)


def check_export(path: str | os.PathLike) -> Path:
    """A weights file the tool may write: absent, or one it exported before (a ``.safetensors``
    with the tool's JSON card beside it). Anything else is refused in one line."""
    target = Path(path).expanduser()
    if target.suffix != ".safetensors":
        raise RewriteError(f"export={os.fspath(path)} must name a .safetensors file")
    if target.exists() or target.is_symlink():
        try:
            card = json.loads(target.with_suffix(".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            card = None
        if target.is_symlink() or not target.is_file() or not (isinstance(card, dict) and "world" in card):
            raise RewriteError(f"export={os.fspath(path)} exists and was not exported by lightning-rewrite (no card "
                               f"{target.with_suffix('.json').name} beside it); give export= a new file")
    parent = _existing_ancestor(target.parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RewriteError(f"cannot write export={os.fspath(path)}: {parent} is not writable by this user")
    return target
