"""``nas dashboard``: serve optuna-dashboard on a campaign's study (``pip install
'mindspore-nas[dashboard]'``)."""
from __future__ import annotations

import argparse

from nas.campaign.config import default_storage
from nas.campaign.study import open_study
from nas.spec.optional import optional_import


def _dashboard(args: argparse.Namespace) -> int:
    _, config = open_study(args.run)  # a named error if the run or its storage is missing
    dashboard = optional_import("optuna_dashboard")
    url = config.storage or default_storage(args.run)
    print(f"optuna-dashboard on {url} at http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    dashboard.run_server(url, host=args.host, port=args.port)
    return 0


def configure_dashboard(dashboard: argparse.ArgumentParser) -> None:
    dashboard.add_argument("run", help="run directory, e.g. runs/demo")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    dashboard.set_defaults(handler=_dashboard)
