"""Reading YAML that a user (or a shared run directory) wrote: data only, bounded.

Every YAML file the project reads goes through :func:`read_yaml_file` or :func:`load_yaml_text`:

- ``yaml.SafeLoader`` only, so a document builds plain data and never an object;
- at most :data:`MAX_BYTES` bytes (specs and configs are a few kilobytes): a 100 MB file where a
  config is expected fails at once, before anything is parsed;
- UTF-8 text: a binary file is named, not reported as a codec error;
- at most :data:`MAX_NODES` values once aliases are expanded: a "billion laughs" document
  (aliases of aliases, tiny on disk and in memory, that expand exponentially when walked or
  written out) is refused after parsing, before anything is built from it.

Errors are :class:`YamlInputError` (a ``ConfigError``) naming the file.

Writing goes through :func:`dump_yaml`: ``yaml.safe_dump`` with libyaml's emitter when PyYAML has it
(about 4x faster; a campaign driver writes a spec for every trial), which writes the same text as
PyYAML's own emitter for the project's data (checked on specs in the tests).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nas.spec.errors import ConfigError

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 100_000  # nodes once aliases are expanded; a spec or config has a few hundred
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's emitter where PyYAML was built with it


class YamlInputError(ConfigError):
    """A YAML input that is too large, not text, malformed, or an alias bomb."""


def _expanded_size(root: Any) -> int:
    """Nodes of the composed document with every alias expanded, counted without expanding:
    an alias is the same node object, so each distinct node's size is computed once."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:  # bounded: each distinct node is pushed twice at most per parent edge
        node, ready = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            sizes[id(node)] = 1
            continue
        if ready:
            sizes[id(node)] = min(1 + sum(sizes[id(child)] for child in children), MAX_NODES + 1)
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def load_yaml_text(text: str, source: str = "<yaml>") -> Any:
    """The data of one YAML document (``source`` names it in errors)."""
    if len(text) > MAX_BYTES:
        raise YamlInputError(f"{source}: {len(text):,} characters, more than a YAML input may hold "
                             f"({MAX_BYTES:,}); is this the right file?")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise YamlInputError(f"{source}: its YAML aliases (&anchor/*alias) expand to more than {MAX_NODES:,} "
                                 "values; refused, as such a document can expand without bound")
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise YamlInputError(f"{source}: malformed YAML{where}") from None
    finally:
        loader.dispose()


def dump_yaml(data: Any, **options: Any) -> str:
    """``yaml.safe_dump(data, **options)`` as text, with the fastest safe emitter at hand."""
    return str(yaml.dump(data, Dumper=_DUMPER, **options))


def read_yaml_file(path: str | Path, what: str = "YAML file") -> Any:
    """The data of the YAML file ``path``; ``what`` names it in errors ("spec file", "config file")."""
    path = Path(path)
    if not path.is_file():
        raise YamlInputError(f"{what} {str(path)!r} not found")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise YamlInputError(f"{path}: {size:,} bytes, more than a {what} may hold ({MAX_BYTES:,}); "
                             "is this the right file?")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise YamlInputError(f"{path}: not a text {what} (byte {error.start} is not UTF-8)") from None
    return load_yaml_text(text, str(path))


__all__ = ["dump_yaml", "load_yaml_text", "read_yaml_file", "YamlInputError", "MAX_BYTES", "MAX_NODES"]
