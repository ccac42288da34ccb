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
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from controllers.base import Controller, ControllerError

FORMAT = "nas-controller-state/1"
_NUMERIC = "biufc"  # bool, signed and unsigned integers, floats, complex


class StateFileError(ControllerError):
    """A controller state file that is missing, unreadable, or not a state this version writes."""


class StateMismatchError(StateFileError):
    """A controller state file whose digest the campaign's study does not record."""


def encode(value: Any, where: str = "state") -> Any:
    """``value`` as JSON-ready data (see the module's note); ``where`` names it in errors."""
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
        return {"$array": [data.dtype.str, list(data.shape), base64.b64encode(data.tobytes()).decode("ascii")]}
    if isinstance(value, tuple):
        return {"$tuple": [encode(item, f"{where}[{index}]") for index, item in enumerate(value)]}
    if isinstance(value, list):
        return [encode(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("$") for key in value):
            return {key: encode(item, f"{where}.{key}") for key, item in value.items()}
        return {"$map": [[encode(key, f"{where} key"), encode(item, f"{where}[{key!r}]")]
                         for key, item in value.items()]}
    raise StateFileError(f"{where}: a {type(value).__name__} cannot be saved in a controller state "
                         "(plain data and NumPy arrays only)")


def decode(value: Any, where: str = "state") -> Any:
    """The inverse of :func:`encode`; malformed tags raise :class:`StateFileError`."""
    if isinstance(value, list):
        return [decode(item, where) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, body), = value.items()
        if tag == "$tuple" and isinstance(body, list):
            return tuple(decode(item, where) for item in body)
        if tag == "$map" and isinstance(body, list) and all(isinstance(p, list) and len(p) == 2 for p in body):
            return {_key(decode(key, where), where): decode(item, where) for key, item in body}
        if tag == "$array":
            return _array(body, where)
    if any(key.startswith("$") for key in value):
        raise StateFileError(f"{where}: unknown tag in {sorted(value)}")
    return {key: decode(item, where) for key, item in value.items()}


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
    text = json.dumps({"format": FORMAT, "controller": getattr(controller, "name", None),
                       "state": encode(controller.state_dict())}, allow_nan=True, sort_keys=True)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if record is not None:
        record(digest)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
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
    return decode(document["state"], str(path))


def load_state(controller: Controller, path: str | Path, *, digests: Iterable[str] | None = None,
               **options: Any) -> None:
    """Restore ``controller`` from a file written by :func:`save_state` (``options`` go to its
    ``load_state_dict``; ``digests`` as in :func:`read_state`)."""
    controller.load_state_dict(read_state(path, digests=digests), **options)


__all__ = ["save_state", "load_state", "read_state", "encode", "decode", "StateFileError",
           "StateMismatchError", "FORMAT"]
