"""``nas spec show|export``: look at and write specs."""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.spec.checks import check_int
from nas.spec.errors import SpecError
from nas.spec.profile import format_table, profile
from search_spaces import references


def _show(args: argparse.Namespace) -> int:
    spec = references.resolve(args.spec, args.width)
    if args.resolution is not None:
        check_int("resolution", args.resolution, 8, 4096, error=SpecError)
    result = profile(spec, args.resolution)
    print(f"{spec.name}  family {spec.family}  arch_id {spec.arch_id}")
    print(format_table(result))
    if args.block_strings:
        print("\n".join(spec.to_block_strings()))
    return 0


def _export(args: argparse.Namespace) -> int:
    spec = references.resolve(args.spec, args.width)
    if args.resolution is not None:  # replace() checks the value; 0 is an error, not "unchanged"
        spec = spec.replace(resolution=args.resolution)
    if args.num_classes is not None:
        spec = spec.replace(num_classes=args.num_classes)
    text = spec.to_yaml()
    if args.output in (None, "-"):
        print(text, end="")
    else:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out} (arch_id {spec.arch_id})")
    return 0


def _list(args: argparse.Namespace) -> int:
    for name in references.names():
        print(name)
    return 0


def configure_spec(spec: argparse.ArgumentParser) -> None:
    actions = spec.add_subparsers(dest="spec_command", metavar="ACTION")
    actions.required = True

    show = actions.add_parser("show", help="per-layer table and totals of a reference or spec file")
    show.add_argument("spec", help="reference name (see 'nas spec list') or a spec YAML file")
    show.add_argument("--width", type=float, default=1.0, help="width multiplier (default 1.0)")
    show.add_argument("--resolution", type=int, default=None, help="input resolution (default: the spec's)")
    show.add_argument("--block-strings", action="store_true", help="also print the block strings")
    show.set_defaults(handler=_show)

    export = actions.add_parser("export", help="write a reference or spec as canonical YAML")
    export.add_argument("spec", help="reference name or spec YAML file")
    export.add_argument("--width", type=float, default=1.0, help="width multiplier (default 1.0)")
    export.add_argument("--resolution", type=int, default=None, help="set the input resolution")
    export.add_argument("--num-classes", type=int, default=None, help="set the number of classes")
    export.add_argument("-o", "--output", default=None, help="output file (default: stdout)")
    export.set_defaults(handler=_export)

    names = actions.add_parser("list", help="list the reference architectures")
    names.set_defaults(handler=_list)
