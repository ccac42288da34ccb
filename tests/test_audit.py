"""The security audit, as a test: nothing in the product or its benchmarks can turn a file that a
user or a shared run directory wrote into code. Parsed with ``ast`` (comments and strings that
merely mention these names do not count).

Refused: importing ``pickle``/``cPickle``/``dill``/``marshal``/``shelve``; calling ``yaml.load``,
``yaml.unsafe_load``, ``yaml.full_load``, ``eval``, ``exec``, ``os.system``, ``os.popen``,
``torch.load``, ``joblib.load``; ``numpy.load(..., allow_pickle=True)``; any call with
``shell=True``. YAML is read with ``nas.spec.yamlio`` (a bounded ``SafeLoader``), controller
states with ``controllers.statefile`` (JSON), predictors from JSON and SQLite rows.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("nas", "search_spaces", "latency", "controllers", "netadapt", "bench", "experiments")
MODULES = {"pickle", "cPickle", "_pickle", "dill", "marshal", "shelve"}
CALLS = {"yaml.load", "yaml.unsafe_load", "yaml.full_load", "eval", "exec", "os.system", "os.popen", "torch.load",
         "joblib.load"}


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def findings(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} imports {alias.name}" for alias in node.names if alias.name.split(".")[0] in MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in MODULES:
            found.append(f"{where} imports from {node.module}")
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            if name in CALLS:
                found.append(f"{where} calls {name}")
            flags = {keyword.arg: keyword.value for keyword in node.keywords}
            for flag in ("shell", "allow_pickle"):
                value = flags.get(flag)
                if isinstance(value, ast.Constant) and value.value is True:
                    found.append(f"{where} calls {name} with {flag}=True")
    return found


def test_no_code_runs_from_data() -> None:
    files = [path for folder in SCANNED for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 50
    problems = [line for path in files for line in findings(path)]
    assert not problems, "\n".join(problems)


def test_the_audit_catches_what_it_looks_for(tmp_path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import pickle\nimport yaml, subprocess, numpy as np\nyaml.load(s)\neval('1')\n"
                      "subprocess.run('ls', shell=True)\nnp.load('x.npz', allow_pickle=True)\n")
    found = " ".join(findings(sample, tmp_path))
    for needle in ("imports pickle", "calls yaml.load", "calls eval", "shell=True", "allow_pickle=True"):
        assert needle in found
