"""Writes that matter, made atomic: a file is either its old content or its new one, never half written.

A write goes to a hidden temporary file in the target's folder, is fsynced and renamed over the target.
Temporary files left by a killed writer are removed by the next write to the folder. Checkpoints, reports,
pictures, snapshots, golden records and the CLI's JSON outputs all go through here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# ".{target}.{pid}.{mkstemp's 8 characters}.tmp"; the writer's pid tells an orphan from a write in progress
_TEMP = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a pid we can ask about: leave the file alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: the process exists under another user
        return True
    return True


def remove_orphan_temps(folder: Path) -> list[Path]:
    """Delete temporary files of :func:`atomic_write_bytes` whose writer process is gone (on this host).

    A run killed in the middle of a write leaves its hidden ``.tmp`` file (as large as a checkpoint) behind;
    the target file itself is intact. Temporary files of a live process, this one included, are kept.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP.match(p.name)
        if m is None or int(m["pid"]) == os.getpid() or _pid_alive(int(m["pid"])):
            continue
        try:
            p.unlink()
        except OSError:
            continue
        log.info("removed %s, left by an interrupted write", p)
        removed.append(p)
    return removed


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    The file gets the permissions ``open()`` would give it (``0o666`` less the umask); orphaned temporary
    files of earlier, killed writers in the folder are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphan_temps(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; ours follow the umask like open() does
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
