"""``nas import mindcv``: bring a MindCV model and checkpoint into our spec and names."""
from __future__ import annotations

import argparse

from nas.models.mindcv import import_mindcv, mindcv_names


def _import_mindcv(args: argparse.Namespace) -> int:
    spec_path, ckpt_path = import_mindcv(args.model, args.ckpt, args.out)
    print(f"wrote {spec_path} and {ckpt_path}")
    return 0


def configure_import(importer: argparse.ArgumentParser) -> None:
    sources = importer.add_subparsers(dest="import_source", metavar="SOURCE")
    sources.required = True
    mindcv = sources.add_parser("mindcv", help="a MindCV model and checkpoint -> spec.yaml + model.ckpt",
                                description="Known models: " + ", ".join(mindcv_names()))
    mindcv.add_argument("model", help="MindCV model name, e.g. mobilenet_v3_large_100")
    mindcv.add_argument("--ckpt", required=True, help="the MindCV checkpoint file")
    mindcv.add_argument("--out", required=True, help="output directory")
    mindcv.set_defaults(handler=_import_mindcv)
