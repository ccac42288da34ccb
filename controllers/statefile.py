"""Controller states on disk, in a format that cannot run code.

A campaign's run directory may come from someone else (a shared file system, a copied archive),
so what is read back from it must be data, never objects: a state is written as one JSON
document. ``state_dict()`` values are plain data with a few exact-type tags, so that a restored
controller continues with exactly the proposals the original would have made:

- NumPy arrays (policy weights, optimizer moments): ``{"$array": [dtype, shape, base64]}``, the
  little-endian bytes of a numeric array (object arrays are refused);
- tuples, which ``random.Random.setstate`` and the samplers need as tuples: ``{"$tuple": [...]}``;
- mappings whose keys are not all strings (trial numbers): ``{"$map": [[key, value], ...]}``;
- NumPy scalars become Python numbers; ``NaN`` and infinities are JSON's ``NaN``/``Infinity``.

Anything else (an arbitrary object) is refused when saving, with the path of the value inside
the state, so a controller cannot silently write what it could not read back.

The file's SHA-256 is what :func:`save_state` returns; a campaign records it in its study after
every save and refuses, on resume, a file whose digest the study does not know
(:class:`StateMismatchError`): a state that was tampered with or belongs to another run.

Large arrays (:data:`BLOB_BYTES` or more: the RL policy's weights and Adam's moments) are not
inlined. Each is written once, as its raw little-endian bytes, to ``<state>.arrays/<sha256>``, and
the state holds ``{"$blob": [dtype, shape, sha256]}``. Reading one checks its size and its
SHA-256 against the name the (already checked) state gives, so the chain of digests from the study
covers the arrays too, and a blob is never parsed, only copied into an array. A campaign saves
after every tell while the policy changes once per batch: re-encoding its 440 KB as base64 JSON
and hashing the whole text made up most of a save (about 8 ms of 11 on SQLite, at 300 trials).
Blobs no longer referenced by the state on disk are deleted after each save that wrote one.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from controllers.base import Controller, ControllerError

FORMAT = "nas-controller-state/1"
_PLAIN = frozenset({int, float, str, bool, type(None)})  # exact types JSON holds as they are
BLOB_BYTES = 4 * 1024  # arrays this large or larger are written as blobs beside the state
_NUMERIC = "biufc"  # bool, signed and unsigned integers, floats, complex


class StateFileError(ControllerError):
    """A controller state file that is missing, unreadable, or not a state this version writes."""


class StateMismatchError(StateFileError):
    """A controller state file whose digest the campaign's study does not record."""


def encode(value: Any, where: str = "state", blobs: BlobDir | None = None) -> Any:
    """``value`` as JSON-ready data (see the module's note); ``where`` names it in errors. With
    ``blobs``, arrays of :data:`BLOB_BYTES` or more are written there and referenced."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return encode(value.item(), where)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _NUMERIC:
            raise StateFileError(f"{where}: an array of dtype {value.dtype} cannot be saved (numeric arrays only)")
        data = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        if blobs is not None and data.nbytes >= BLOB_BYTES:
            return {"$blob": [data.dtype.str, list(data.shape), blobs.put(data.tobytes())]}
        return {"$array": [data.dtype.str, list(data.shape), base64.b64encode(data.tobytes()).decode("ascii")]}
    if isinstance(value, tuple):
        return {"$tuple": [encode(item, f"{where}[{index}]", blobs) for index, item in enumerate(value)]}
    if isinstance(value, list):
        if all(type(item) in _PLAIN for item in value):  # a policy's choices and log-probabilities
            return list(value)
        return [encode(item, f"{where}[{index}]", blobs) for index, item in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("$") for key in value):
            return {key: encode(item, f"{where}.{key}", blobs) for key, item in value.items()}
        return {"$map": [[encode(key, f"{where} key"), encode(item, f"{where}[{key!r}]", blobs)]
                         for key, item in value.items()]}
    raise StateFileError(f"{where}: a {type(value).__name__} cannot be saved in a controller state "
                         "(plain data and NumPy arrays only)")


def decode(value: Any, where: str = "state", blobs: BlobDir | None = None) -> Any:
    """The inverse of :func:`encode`; malformed tags raise :class:`StateFileError`. A blob is read
    from ``blobs`` (a state that references one and comes without them is refused)."""
    if isinstance(value, list):
        return [decode(item, where, blobs) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, body), = value.items()
        if tag == "$tuple" and isinstance(body, list):
            return tuple(decode(item, where, blobs) for item in body)
        if tag == "$map" and isinstance(body, list) and all(isinstance(p, list) and len(p) == 2 for p in body):
            return {_key(decode(key, where), where): decode(item, where, blobs) for key, item in body}
        if tag == "$array":
            return _array(body, where)
        if tag == "$blob":
            if blobs is None:
                raise StateFileError(f"{where}: the state references an array blob, but no blob directory was given")
            return blobs.get(body, where)
    if any(key.startswith("$") for key in value):
        raise StateFileError(f"{where}: unknown tag in {sorted(value)}")
    return {key: decode(item, where, blobs) for key, item in value.items()}


class BlobDir:
    """The directory of a state's array blobs: files named by the SHA-256 of their bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.used: set[str] = set()  # the blobs the state being written references
        self.wrote = False

    def put(self, raw: bytes) -> str:
        """Write ``raw`` (unless a blob of the same bytes is there already); its SHA-256."""
        digest = hashlib.sha256(raw).hexdigest()
        self.used.add(digest)
        target = self.path / digest
        if not target.is_file():
            self.path.mkdir(parents=True, exist_ok=True)
            _write_durably(target, raw)
            self.wrote = True
        return digest

    def get(self, body: Any, where: str) -> np.ndarray[Any, Any]:
        """The array of a ``$blob`` reference, after its size and SHA-256 are checked."""
        try:
            dtype_text, shape, digest = body
            dtype = np.dtype(str(dtype_text))
            shape = tuple(int(size) for size in shape)
            digest = str(digest)
            if (dtype.kind not in _NUMERIC or any(size < 0 for size in shape) or len(digest) != 64
                    or not all(c in "0123456789abcdef" for c in digest)):
                raise ValueError(f"dtype {dtype} shape {shape} name {digest[:70]!r}")
        except (TypeError, ValueError) as error:
            raise StateFileError(f"{where}: a malformed array blob reference ({error})") from None
        target = self.path / digest
        expected = dtype.itemsize * math.prod(shape)
        if not target.is_file():
            raise StateFileError(f"{where}: array blob {target} is missing; restore the run directory's "
                                 f"{self.path.name} folder with its state, or delete both to restart the controller")
        if target.stat().st_size != expected:
            raise StateMismatchError(f"{where}: array blob {target} holds {target.stat().st_size} bytes, "
                                     f"not the {expected} its state names: it was changed")
        raw = target.read_bytes()
        if hashlib.sha256(raw).hexdigest() != digest:
            raise StateMismatchError(f"{where}: array blob {target} does not match its SHA-256 name: it was changed")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))

    def prune(self) -> None:
        """Delete the blobs the state just written does not reference (after a save that wrote
        one: until then, the state on disk may be the previous one, which needs its own)."""
        if not self.wrote or not self.path.is_dir():
            return
        for entry in self.path.iterdir():
            if entry.name not in self.used and len(entry.name) == 64:
                entry.unlink(missing_ok=True)


def blob_dir(path: Path) -> BlobDir:
    """The blob directory of the state file ``path``: ``<path>.arrays`` beside it."""
    return BlobDir(path.with_name(path.name + ".arrays"))


def _write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file, flushed to disk, then renamed)."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _key(key: Any, where: str) -> Any:
    if isinstance(key, (list, dict)):
        raise StateFileError(f"{where}: a mapping key must be a number, string or tuple (got {key!r})")
    return key


def _array(body: Any, where: str) -> np.ndarray[Any, Any]:
    try:
        dtype_text, shape, text = body
        dtype = np.dtype(str(dtype_text))
        shape = tuple(int(size) for size in shape)
        if dtype.kind not in _NUMERIC or any(size < 0 for size in shape):
            raise ValueError(f"dtype {dtype} shape {shape}")
        raw = base64.b64decode(str(text).encode("ascii"), validate=True)
        return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    except (TypeError, ValueError) as error:
        raise StateFileError(f"{where}: a malformed array ({error})") from None


def save_state(controller: Controller, path: str | Path, *, record: Callable[[str], None] | None = None) -> str:
    """Write ``controller.state_dict()`` to ``path`` atomically as JSON; return its SHA-256.

    ``record(digest)`` is called before the file is replaced, so whoever keeps the digests (a
    campaign's study) knows the new file before it exists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blobs = blob_dir(path)
    text = json.dumps({"format": FORMAT, "controller": getattr(controller, "name", None),
                       "state": encode(controller.state_dict(), blobs=blobs)}, allow_nan=True, sort_keys=True)
    raw = text.encode("utf-8")
    digest = hashlib.sha256(raw).hexdigest()
    if record is not None:
        record(digest)
    _write_durably(path, raw)
    blobs.prune()
    return digest


def read_state(path: str | Path, *, digests: Iterable[str] | None = None) -> Any:
    """The state saved in ``path``. With ``digests``, a file whose SHA-256 is not among them is
    refused (:class:`StateMismatchError`) before anything in it is parsed."""
    path = Path(path)
    if not path.is_file():
        raise StateFileError(f"controller state file not found: {path}")
    raw = path.read_bytes()
    if digests is not None:
        known = set(digests)
        found = hashlib.sha256(raw).hexdigest()
        if found not in known:
            raise StateMismatchError(
                f"controller state {path} (sha256 {found[:12]}) is not the one this campaign's study recorded "
                f"({', '.join(sorted(d[:12] for d in known)) or 'none'}): it was changed or comes from another "
                "run; restore the run directory's own file, or delete it to restart the controller")
    try:
        document = json.loads(raw.decode("utf-8"))  # NaN and Infinity parse as floats
    except (UnicodeDecodeError, ValueError) as error:
        raise StateFileError(f"controller state file {path} is not a JSON state: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or "state" not in document:
        kind = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise StateFileError(f"controller state file {path}: not a {FORMAT} document (format {kind!r})")
    return decode(document["state"], str(path), blob_dir(path))


def load_state(controller: Controller, path: str | Path, *, digests: Iterable[str] | None = None,
               **options: Any) -> None:
    """Restore ``controller`` from a file written by :func:`save_state` (``options`` go to its
    ``load_state_dict``; ``digests`` as in :func:`read_state`)."""
    controller.load_state_dict(read_state(path, digests=digests), **options)


__all__ = ["save_state", "load_state", "read_state", "encode", "decode", "StateFileError",
           "StateMismatchError", "FORMAT", "BLOB_BYTES"]
