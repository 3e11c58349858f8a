"""Checkpoints written atomically (:mod:`reference.atomic_io`), and read back without unpickling arbitrary objects.

Every checkpoint carries a SHA-256 of its tensors (``tensors_sha256``), checked when it is loaded, so weights
that changed on disk are refused instead of loading silently.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import re
from pathlib import Path
from typing import Any

import torch

from ..atomic_io import atomic_write_bytes
from ..errors import UserError

FORMAT = "tvref-checkpoint/1"
DIGEST_KEY = "tensors_sha256"
METADATA = "checkpoint.json"


class CheckpointError(UserError, ValueError):
    """A file is not a checkpoint of this project, or does not fit the model it is loaded into."""


def rng_state() -> dict[str, Any]:
    """Every random source the training loop draws from (python, torch CPU, torch CUDA)."""
    state: dict[str, Any] = {"python": list(_to_lists(random.getstate())), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _to_lists(obj):
    return [(_to_lists(x) if isinstance(x, tuple) else x) for x in obj]


def _to_tuples(obj):
    return tuple((_to_tuples(x) if isinstance(x, list) else x) for x in obj)


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuples(state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _walk_tensors(obj: Any, prefix: str):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in sorted(obj.items(), key=lambda kv: str(kv[0])):
            yield from _walk_tensors(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk_tensors(v, f"{prefix}/{i}")


def tensors_sha256(state: dict[str, Any]) -> str:
    """SHA-256 over every tensor in ``state`` (its key path, dtype, shape and bytes), in a fixed order.

    The digest key and the format tag are not part of it, so it can be stored inside the state it describes.
    """
    h = hashlib.sha256()
    body = {k: v for k, v in state.items() if k not in (DIGEST_KEY, "format")}
    for name, t in _walk_tensors(body, ""):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # hashed in place (no copy through tobytes)
    return h.hexdigest()


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> str:
    """``state`` plus the format tag and its tensors' SHA-256, written atomically (an interrupted save leaves
    the old file intact). Returns the digest, for :data:`METADATA`."""
    import io

    digest = tensors_sha256(state)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state, DIGEST_KEY: digest}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return digest


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def _unpickler_reason(exc: BaseException) -> str:
    """What torch's safe unpickler objected to, without its advice to load the file unsafely."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        rest = [ln.strip() for ln in text.split("WeightsUnpickler error:", 1)[1].splitlines() if ln.strip()]
        if rest:
            return re.split(r"(?<=\.) (?=Please|To |Check )", rest[0])[0][:200]
    return "unsupported content"


def _recorded_digest(path: Path, epoch: Any) -> str | None:
    """The digest :data:`METADATA` beside ``path`` records for this file at this epoch, if any."""
    meta = path.parent / METADATA
    try:
        entry = json.loads(meta.read_text(encoding="utf-8")).get("files", {}).get(path.name, {})
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(entry, dict) or entry.get("epoch") != epoch:
        return None  # another save of this file (a kill between the two writes leaves the metadata behind)
    digest = entry.get(DIGEST_KEY)
    return digest if isinstance(digest, str) else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check its tensors' SHA-256.

    Anything else is refused with a one-line :class:`CheckpointError`: a file with pickled code (never run),
    an empty or truncated file, a file without this project's format tag, tensors that no longer match the
    digest stored in the file or in :data:`METADATA` beside it. Checkpoints from before digests load as they are.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes); not a checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - weights_only refuses pickled code; other errors mean "not ours"
        if isinstance(exc, pickle.UnpicklingError) and "weights_only" in str(exc):
            raise CheckpointError(f"{path}: not a checkpoint of this project: it holds pickled Python objects "
                                  f"other than tensors and plain data ({_unpickler_reason(exc)}); refused, "
                                  "nothing in it was run") from exc
        raise CheckpointError(f"{path}: not a checkpoint of this project ({_first_line(exc)})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint of this project (no {FORMAT!r} format tag)")
    stored = state.get(DIGEST_KEY)
    recorded = _recorded_digest(path, state.get("epoch"))
    if stored is not None or recorded is not None:
        actual = tensors_sha256(state)
        for where, expected in (("the file", stored), (METADATA, recorded)):
            if expected is not None and expected != actual:
                raise CheckpointError(f"{path}: its tensors do not match the SHA-256 recorded in {where} "
                                      f"({expected[:12]}..., now {actual[:12]}...): the file changed on disk")
    return state
