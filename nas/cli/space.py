"""``nas space list|show|sample|decode|encode``: look at search spaces and move between points
(decisions) and specs.

Options of a space are given as ``--set name=value`` (the value is read as YAML, so
``--set se_ratios=[0]`` or ``--set kernels=[3,5,[3,5]]``).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nas.spec.arch import ArchSpec
from nas.spec.checks import check_int
from nas.spec.profile import profile
from nas.spec.yamlio import read_yaml_file
from search_spaces import get_space, space_names


def _options(pairs: list[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs or []:
        name, separator, text = pair.partition("=")
        if not separator or not name:
            raise ValueError(f"--set expects name=value (got {pair!r})")
        try:
            options[name.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ValueError(f"--set {name}: the value {text!r} is not valid YAML") from None
    return options


def _space(args: argparse.Namespace) -> Any:
    return get_space(args.space, **_options(args.set))


def _read_yaml_mapping(path: str, what: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} file not found: {file}")
    try:
        data = read_yaml_file(file, "decisions file")
    except yaml.YAMLError:
        raise ValueError(f"{file}: malformed YAML") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected a mapping of {what}")
    return data


def _write_spec(spec: Any, output: str | None) -> None:
    if output in (None, "-"):
        print(spec.to_yaml(), end="")
        return
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(spec.to_yaml())
    print(f"wrote {out} (arch_id {spec.arch_id})")


def _list(args: argparse.Namespace) -> int:
    for name in space_names():
        print(name)
    return 0


def _show(args: argparse.Namespace) -> int:
    space = _space(args)
    centre = space.center()
    reference = space.decode(centre)
    result = profile(reference)
    print(f"space {space.name}: {len(space.decisions)} decisions, size {space.size} (10^{math.log10(space.size):.2f})")
    print("options: " + ", ".join(f"{key}={value}" for key, value in space.options.items()))
    print(f"centre: arch_id {reference.arch_id}, params {result.params:,}, MAdds {result.madds / 1e6:.1f}M")
    width = max(len(decision.name) for decision in space.decisions)
    for decision in space.decisions:
        choices = " ".join(f"[{choice}]" if choice == centre[decision.name] else str(choice)
                           for choice in decision.choices)
        print(f"  {decision.name:<{width}}  {choices}")
    print("([x] = the centre's choice)")
    return 0


def _sample(args: argparse.Namespace) -> int:
    space = _space(args)
    check_int("--seed", args.seed, 0)
    point = space.center() if args.centre else space.sample(np.random.default_rng(args.seed))
    spec = space.decode(point)
    print(yaml.safe_dump(point, sort_keys=False), end="")
    if args.output:
        _write_spec(spec, args.output)
    return 0


def _decode(args: argparse.Namespace) -> int:
    space = _space(args)
    spec = space.decode(_read_yaml_mapping(args.decisions, "decisions"))
    _write_spec(spec, args.output)
    return 0


def _encode(args: argparse.Namespace) -> int:
    space = _space(args)
    point = space.encode(ArchSpec.from_yaml(Path(args.spec)))
    print(yaml.safe_dump(point, sort_keys=False), end="")
    return 0


def configure_space(space: argparse.ArgumentParser) -> None:
    actions = space.add_subparsers(dest="space_command", metavar="ACTION")
    actions.required = True

    def with_space(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("space", help="space name (see 'nas space list')")
        parser.add_argument("--set", action="append", metavar="NAME=VALUE",
                            help="a space option, the value read as YAML (repeatable)")

    names = actions.add_parser("list", help="list the search spaces")
    names.set_defaults(handler=_list)

    show = actions.add_parser("show", help="decisions, choices, size and centre of a space")
    with_space(show)
    show.set_defaults(handler=_show)

    sample = actions.add_parser("sample", help="print a random point (decisions); -o writes its spec")
    with_space(sample)
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.add_argument("--centre", action="store_true", help="the centre point instead of a random one")
    sample.add_argument("-o", "--output", default=None, help="write the decoded spec YAML here")
    sample.set_defaults(handler=_sample)

    decode = actions.add_parser("decode", help="the spec of a point given as a decisions YAML file")
    with_space(decode)
    decode.add_argument("decisions", help="YAML file: a mapping of decision name to choice")
    decode.add_argument("-o", "--output", default=None, help="output spec file (default: stdout)")
    decode.set_defaults(handler=_decode)

    encode = actions.add_parser("encode", help="the decisions of a spec YAML file (error if not in the space)")
    with_space(encode)
    encode.add_argument("spec", help="spec YAML file")
    encode.set_defaults(handler=_encode)
