"""The shared validators and the optional-package errors: messages name the field and show the value."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from nas.spec.checks import check_bool, check_choice, check_int, check_number, check_text, is_int, is_number
from nas.spec.errors import ConfigError, FieldError, MissingDependencyError
from nas.spec.optional import OPTIONAL, install_hint, optional_import
from tests.support.cli import ROOT


@pytest.mark.parametrize("call,message", [
    (lambda: check_int("latency.batch", 0, 1), "latency.batch: must be an integer >= 1 (got 0)"),
    (lambda: check_int("workers", True, 1), "workers: must be an integer >= 1 (got True)"),
    (lambda: check_int("x", 2.0, 1, 4), "x: must be an integer in [1, 4] (got 2.0)"),
    (lambda: check_number("lr", "fast", 0), "lr: must be a finite number (got 'fast')"),
    (lambda: check_number("lr", math.nan, 0), "lr: must be a finite number (got nan)"),
    (lambda: check_number("lr", 0, 0, low_open=True), "lr: must be > 0 (got 0)"),
    (lambda: check_number("held_out", 1.5, 0, 1, low_open=True), "held_out: must be in (0, 1] (got 1.5)"),
    (lambda: check_choice("kind", "linear", ("soft", "hard")), "kind: must be one of ['soft', 'hard'] (got 'linear')"),
    (lambda: check_choice("flag", True, (0, 1)), "flag: must be one of [0, 1] (got True)"),
    (lambda: check_bool("augment", "yes"), "augment: must be true or false (got 'yes')"),
    (lambda: check_text("name", ""), "name: must be a non-empty string (got '')"),
])
def test_every_check_names_the_field_and_shows_the_value(call, message: str) -> None:
    with pytest.raises(FieldError) as caught:
        call()
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_checks_return_the_value_and_raise_the_given_error_class() -> None:
    assert check_int("n", 3, 1) == 3 and check_number("x", 2, 0) == 2.0 and isinstance(check_number("x", 2), float)
    assert check_choice("k", "soft", ("soft",)) == "soft" and check_bool("b", False) is False
    assert check_text("t", "a") == "a"
    with pytest.raises(ConfigError, match="budget.trials"):
        check_int("budget.trials", -1, 1, error=ConfigError)
    assert not is_int(True) and is_int(7) and not is_number(math.inf) and not is_number(False) and is_number(0.5)


def test_a_missing_optional_package_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mindcv", None)  # what Python does for a package that is absent
    with pytest.raises(MissingDependencyError) as caught:
        optional_import("mindcv")
    assert str(caught.value) == "importing MindCV models needs the package 'mindcv': pip install 'mindcv==0.3.0'"
    assert isinstance(caught.value, ImportError)
    assert set(OPTIONAL) >= {"mindcv", "psycopg2", "optuna_dashboard", "onnxruntime"}
    assert install_hint("unheard_of") == "this command needs the package 'unheard_of': pip install 'unheard_of'"


@pytest.mark.parametrize("module,argv", [
    ("mindcv", ["import", "mindcv", "mobilenet_v3_large_100", "--ckpt", "{tmp}/mindcv.ckpt", "--out", "{tmp}/out"]),
    ("optuna_dashboard", ["dashboard", "{tmp}/run"]),
])
def test_the_cli_reports_a_missing_package_on_one_line_with_exit_2(module: str, argv: list[str], tmp_path) -> None:
    (tmp_path / "mindcv.ckpt").write_bytes(b"not read before the import")
    if module == "optuna_dashboard":  # a run whose study exists: the dashboard is the only thing missing
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "config.yaml").write_text((ROOT / "experiments" / "demo.yaml").read_text())
        import optuna

        optuna.create_study(storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}", study_name="demo")
    words = [word.replace("{tmp}", str(tmp_path)) for word in argv]
    script = (f"import sys; sys.modules[{module!r}] = None; from nas.cli.main import main; "
              f"sys.exit(main({words!r}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={"GLOG_v": "3", "PATH": "/usr/bin:/bin"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("nas: error: ") and f"needs the package '{module}'" in lines[0]
