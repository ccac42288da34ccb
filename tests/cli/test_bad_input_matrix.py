"""The bad-input matrix (issue 15): malformed inputs on every surface of the ``nas`` command.

Every case must give exit code 2 and exactly one line on stderr, with no traceback; the line
names the offending file, field or flag; and every file under the test's directory (inputs,
run directories, the latency cache) is byte-identical afterwards (SHA-256 of each file).

Surfaces: spec YAML, block strings, campaign YAML, recipe YAML, NetAdapt config, checkpoints, LUT
and predictor directories, the latency cache, dataset directories and command-line arguments.
No case gets as far as starting Ray, training a network or measuring latency: each fails while
its input is read or checked.

Block strings are not taken by any command (specs are read as YAML), so that surface is checked
at the library entry point, :meth:`ArchSpec.from_block_strings`, with the CLI's own rule: the
error is one of :data:`nas.spec.errors.USER_ERRORS` and :func:`nas.spec.errors.one_line` of it
names the block.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nas.spec.arch import ArchSpec
from nas.spec.errors import USER_ERRORS, one_line
from tests.support.campaign import tiny_config
from tests.support.cli import ROOT, run_nas_here
from tests.support.datasets import write_cifar10, write_idx, write_image_folder
from tests.support.latency import tiny_spec

HUNDRED_MB = 100 * 1024 * 1024
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
PYTHON_TAG = "!!python/object/apply:os.system ['touch {marker}']\n"
BINARY = bytes(range(128, 256)) * 8

Expected = str | tuple[str, ...]


def _fingerprint(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (paths under ``skip`` left out)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_file() and not any(name == part or name.startswith(part + "/") for part in skip):
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(chunk)
            found[name] = digest.hexdigest()
    return found


def _expect_bad_input(root: Path, argv: list[str], expected: Expected, skip: tuple[str, ...] = ()) -> None:
    """``nas ARGV`` (run in ``root``) exits 2 with one line holding ``expected``, and no file
    under ``root`` changes."""
    before = _fingerprint(root, skip)
    result = run_nas_here(*argv, cwd=root)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert len(lines) == 1, lines
    for part in (expected,) if isinstance(expected, str) else expected:
        assert part in lines[0], (part, lines[0])
    assert _fingerprint(root, skip) == before


def _write(path: Path, content: str | bytes | Callable[[Path], Any]) -> Path:
    """Write ``content`` (text, bytes, or a function that writes ``path`` itself) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        content(path)
    return path


def _each(*steps: Callable[[Path], Any]) -> Callable[[Path], None]:
    """One set-up made of several steps, each given the same path."""
    def run(path: Path) -> None:
        for step in steps:
            step(path)
    return run


def _unlink(name: str) -> Callable[[Path], None]:
    """A set-up step that deletes ``name`` in the folder it is given."""
    def run(folder: Path) -> None:
        (folder / name).unlink()
    return run


def _sparse(size: int) -> Callable[[Path], None]:
    """A file of ``size`` zero bytes that takes no disk space (a 100 MB 'YAML' file)."""
    def write(path: Path) -> None:
        with path.open("wb") as handle:
            handle.truncate(size)
    return write


def _dump(data: Any) -> str:
    return str(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of the test's own: locks, latency cache and named datasets all inside it."""
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NAS_DATA_DIR", str(tmp_path / "datasets"))
    monkeypatch.setattr("nas.runtime.paths.SYSTEM_DATASETS", tmp_path / "system_datasets")
    (tmp_path / "runs").mkdir()
    _write(tmp_path / "spec.yaml", tiny_spec().to_yaml())
    _write(tmp_path / "recipe.yaml", (ROOT / "experiments" / "recipes" / "digits_cpu.yaml").read_text())
    return tmp_path


# ----- 1. spec YAML -------------------------------------------------------------------------------

_SPEC = tiny_spec().to_dict()


def _spec_with(path: str, value: Any) -> str:
    """The tiny spec's YAML with the field at ``path`` (``a.b`` / ``blocks.0.c``) set to ``value``
    (``...`` deletes it)."""
    data = json.loads(json.dumps(_SPEC))
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return _dump(data)


SPEC_CASES: dict[str, tuple[str | bytes | Callable[[Path], Any], Expected]] = {
    "binary": (BINARY, ("bad.yaml", "not a text spec file")),
    "alias_bomb": (ALIAS_BOMB, ("bad.yaml", "aliases")),
    "hundred_mb": (_sparse(HUNDRED_MB), ("bad.yaml", "more than a spec file may hold")),
    "python_tag": (PYTHON_TAG, ("bad.yaml", "malformed YAML")),
    "tab_indent": ("stem:\n\tchannels: 8\n", ("bad.yaml", "malformed YAML")),
    "empty": ("", ("bad.yaml", "must be a mapping")),
    "list_document": ("- stem\n- blocks\n", ("bad.yaml", "must be a mapping")),
    "scalar_document": ("just a string\n", ("bad.yaml", "must be a mapping")),
    "missing_head": (_spec_with("head", ...), "head: missing required field"),
    "empty_blocks": (_spec_with("blocks", []), "blocks"),
    "blocks_mapping": (_spec_with("blocks", {"kind": "mbconv"}), "blocks"),
    "block_string_in_yaml": (_spec_with("blocks", ["r1_k3_s11_e1_i8_o8"]), "blocks[0]"),
    "negative_stem": (_spec_with("stem.channels", -3), "stem.channels"),
    "bool_channels": (_spec_with("stem.channels", True), "stem.channels"),
    "text_resolution": (_spec_with("resolution", "big"), "resolution"),
    "fractional_classes": (_spec_with("num_classes", 1.5), "num_classes"),
    "expand_length": (_spec_with("blocks.0.expand", [16, 16]), "blocks[0]"),
    "se_ratio": (_spec_with("blocks.0.se", {"ratio": 2.0}), "blocks[0].se"),
    "head_kind": (_spec_with("head.kind", "transformer"), "head.kind"),
    "unknown_block_key": (_spec_with("blocks.0.kernal", 3), "blocks[0].kernal"),
    "nan_dropout": (_spec_with("dropout", float("nan")), "dropout"),
}
SPEC_COMMANDS = {
    "show": ["spec", "show", "{file}"],
    "export": ["spec", "export", "{file}", "-o", "runs/out.yaml"],
    "encode": ["space", "encode", "mnasnet", "{file}"],
}


@pytest.mark.parametrize("command", SPEC_COMMANDS)
@pytest.mark.parametrize("case", SPEC_CASES)
def test_spec_yaml(sandbox: Path, case: str, command: str) -> None:
    content, expected = SPEC_CASES[case]
    marker = sandbox / "payload_ran"
    if isinstance(content, str):
        content = content.replace("{marker}", str(marker))
    bad = _write(sandbox / "inputs" / "bad.yaml", content)
    _expect_bad_input(sandbox, [word.replace("{file}", str(bad)) for word in SPEC_COMMANDS[command]], expected)
    assert not marker.exists()


# ----- 2. block strings ---------------------------------------------------------------------------

BLOCK_CASES: dict[str, tuple[list[Any], dict[str, Any], Expected]] = {
    "second_block_width": (["r1_k3_s11_e1_i32_o16", "r1_k3_s11_e6_i24_o24"], {}, ("blocks[1]", "i24")),
    "zero_repeats": (["r0_k3_s11_e6_i32_o16"], {}, ("blocks[0]", "repeats")),
    "zero_ratio": (["r1_k3_s11_e0_i32_o16"], {}, ("blocks[0]", "must be positive")),
    "zero_out": (["r1_k3_s11_e6_i32_o0"], {}, ("blocks[0]", "out")),
    "stride_three": (["r1_k3_s33_e6_i32_o16"], {}, ("blocks[0]", "stride")),
    "conv_with_widths": (["cn_r1_k3_s11_x96_i32_o16"], {}, ("blocks[0]", "takes no e/x")),
    "se_options_with_se0": (["r1_k3_s11_e6_i32_o16_se0_sehsig"], {}, ("blocks[0]", "SE options given with se0")),
    "uppercase": (["R1_K3_S11_E6_I32_O16"], {}, ("blocks[0]", "unknown token 'R1'")),
    "unicode_token": (["r1_k3_s11_e6_i32_o16_\u00e9"], {}, ("blocks[0]", "unknown token")),
    "not_a_string": ([None], {}, ("blocks[0]", "non-empty string")),
    "a_number": ([42], {}, ("blocks[0]", "non-empty string")),
    "no_blocks": ([], {}, ("blocks", "at least one block string")),
    "kernel_groups_exceed": (["r1_k3.5.7.9.3_s11_e1_i4_o8"], {"stem_channels": 4}, ("blocks[0]", "kernel")),
    "stem_channels": (["r1_k3_s11_e6_i32_o16"], {"stem_channels": 0}, "channels"),
    "bad_option": (["r1_k3_s11_e6_i32_o16"], {"resolution": "high"}, "resolution"),
    "unknown_option": (["r1_k3_s11_e6_i32_o16"], {"blocks": []}, ("options", "blocks")),
}


@pytest.mark.parametrize("case", BLOCK_CASES)
def test_block_strings(case: str) -> None:
    strings, options, expected = BLOCK_CASES[case]
    options = {"stem_channels": 32, **options}
    with pytest.raises(USER_ERRORS) as caught:
        ArchSpec.from_block_strings(strings, **options)
    line = one_line(caught.value)
    assert "\n" not in line
    for part in (expected,) if isinstance(expected, str) else expected:
        assert part in line, (part, line)


# ----- 3. campaign YAML ---------------------------------------------------------------------------

def _campaign(name: str = "existing", **changes: Any) -> str:
    return _dump(tiny_config(name, **changes))


def _campaign_without(key: str) -> str:
    data = tiny_config("existing")
    del data[key]
    return _dump(data)


CAMPAIGN_CASES: dict[str, tuple[str | bytes | Callable[[Path], Any], Expected]] = {
    "binary": (BINARY, ("bad.yaml", "not a text config file")),
    "alias_bomb": (ALIAS_BOMB, ("bad.yaml", "aliases")),
    "hundred_mb": (_sparse(HUNDRED_MB), ("bad.yaml", "more than a config file may hold")),
    "list_document": ("- name\n- space\n", ("bad.yaml", "must be a mapping")),
    "empty": ("", ("bad.yaml", "name: required")),
    "no_name": (_campaign_without("name"), ("bad.yaml", "name: required")),
    "path_in_name": (_campaign(name="../elsewhere"), ("bad.yaml", "name")),
    "zero_trials": (_campaign(budget={"trials": 0}), ("bad.yaml", "budget.trials")),
    "negative_workers": (_campaign(workers=-1), ("bad.yaml", "workers")),
    "text_seed": (_campaign(seed="abc"), ("bad.yaml", "seed")),
    "latency_list": (_campaign(latency=[1, 2]), ("bad.yaml", "latency")),
    "held_out_one": (_campaign(evaluator={"held_out": 1.5}), ("bad.yaml", "evaluator.held_out")),
    "repeated_width": (_campaign(baselines={"widths": [0.5, 0.5]}), ("bad.yaml", "baselines.widths")),
    "train_seed": (_campaign(evaluator={"train": {"seed": 3}}), ("bad.yaml", "evaluator.train.seed")),
    "negative_target": (_campaign(reward={"kind": "soft", "target_ms": -5.0, "w": -0.07}), ("bad.yaml", "reward")),
    "lut_without_dir": (_campaign(latency={"source": "lut"}), ("bad.yaml", "latency.lut")),
    "subset_too_large": (_campaign(evaluator={"subset": 100000}), "subset"),
    "missing_dataset_dir": (_campaign(evaluator={"dataset": "no/such/dir"}), "no/such/dir"),
    "space_option": (_campaign(space={"name": "mnasnet", "options": {"colour": "red"}}), "colour"),
    "controller_option": (_campaign(controller={"name": "rl", "options": {"batch_sise": 2}}), "batch_sise"),
}


@pytest.mark.parametrize("case", CAMPAIGN_CASES)
def test_campaign_yaml(sandbox: Path, case: str) -> None:
    from nas.campaign.config import config_from_dict

    existing = sandbox / "runs" / "existing"
    existing.mkdir()
    _write(existing / "config.yaml", config_from_dict(tiny_config("existing")).to_yaml())
    with sqlite3.connect(existing / "study.db") as db:
        db.execute("create table marker (x int)")
    content, expected = CAMPAIGN_CASES[case]
    bad = _write(sandbox / "inputs" / "bad.yaml", content)
    _expect_bad_input(sandbox, ["search", "-c", str(bad), "--runs-dir", str(sandbox / "runs")], expected)


# ----- 4. recipe YAML -----------------------------------------------------------------------------

def _recipe(section: str, key: str, value: Any) -> str:
    data = yaml.safe_load((ROOT / "experiments" / "recipes" / "digits_cpu.yaml").read_text())
    if key:
        data[section][key] = value
    else:
        data[section] = value
    return _dump(data)


RECIPE_CASES: dict[str, tuple[str | bytes | Callable[[Path], Any], Expected]] = {
    "binary": (BINARY, ("bad.yaml", "not a text config file")),
    "alias_bomb": (ALIAS_BOMB, ("bad.yaml", "aliases")),
    "hundred_mb": (_sparse(HUNDRED_MB), ("bad.yaml", "more than a config file may hold")),
    "malformed": ("train: {epochs: 1\n", ("bad.yaml", "malformed YAML")),
    "list_document": ("- train\n", ("bad.yaml", "must be a mapping")),
    "unknown_section": (_recipe("optim", "", {"lr": 1}), ("bad.yaml", "optim")),
    "unknown_key": (_recipe("train", "epoch", 3), ("bad.yaml", "train.epoch")),
    "section_list": (_recipe("train", "", [1, 2]), ("bad.yaml", "train")),
    "zero_epochs": (_recipe("train", "epochs", 0), ("bad.yaml", "epochs")),
    "negative_lr": (_recipe("train", "lr", -0.1), ("bad.yaml", "lr")),
    "optimizer": (_recipe("train", "optimizer", "adamw2"), ("bad.yaml", "optimizer")),
    "text_batch": (_recipe("train", "batch_size", "many"), ("bad.yaml", "batch_size")),
    "tiny_resolution": (_recipe("data", "resolution", 4), ("bad.yaml", "data.resolution")),
    "held_out_one": (_recipe("data", "held_out", 1.0), ("bad.yaml", "data.held_out")),
    "zero_workers": (_recipe("data", "workers", 0), ("bad.yaml", "data.workers")),
    "augment_text": (_recipe("data", "augment", "yes"), ("bad.yaml", "data.augment")),
    "device": (_recipe("system", "device", "TPU"), ("bad.yaml", "system.device")),
    "mode": (_recipe("system", "mode", "eager"), ("bad.yaml", "system.mode")),
    "keep_none": (_recipe("system", "keep_checkpoints", 0), ("bad.yaml", "system.keep_checkpoints")),
}


@pytest.mark.parametrize("case", RECIPE_CASES)
def test_recipe_yaml(sandbox: Path, case: str) -> None:
    content, expected = RECIPE_CASES[case]
    bad = _write(sandbox / "inputs" / "bad.yaml", content)
    _expect_bad_input(sandbox, ["train", "--spec", "spec.yaml", "--recipe", str(bad), "--data", "digits",
                                "-o", "runs/train"], expected)


def test_a_missing_recipe_is_named(sandbox: Path) -> None:
    _expect_bad_input(sandbox, ["train", "--spec", "spec.yaml", "--recipe", "nope.yaml", "--data", "digits",
                                "-o", "runs/train"], "nope.yaml")


# ----- 5. NetAdapt config -------------------------------------------------------------------------

def _netadapt(**changes: Any) -> str:
    data = yaml.safe_load((ROOT / "experiments" / "netadapt" / "demo.yaml").read_text())
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return _dump(data)


NETADAPT_CASES: dict[str, tuple[str | bytes | Callable[[Path], Any], Expected]] = {
    "binary": (BINARY, ("bad.yaml", "not a text config file")),
    "alias_bomb": (ALIAS_BOMB, ("bad.yaml", "aliases")),
    "hundred_mb": (_sparse(HUNDRED_MB), ("bad.yaml", "more than a config file may hold")),
    "malformed": ("budget_ratio: [0.5\n", ("bad.yaml", "malformed YAML")),
    "list_document": ("- budget_ratio\n", ("bad.yaml", "must be a mapping")),
    "unknown_key": (_netadapt(budget_ration=0.5), ("bad.yaml", "budget_ration")),
    "both_budgets": (_netadapt(budget_ms=3.0), ("bad.yaml", "budget_ms")),
    "no_budget": (_netadapt(budget_ratio=...), "--budget-ms"),
    "ratio_above_one": (_netadapt(budget_ratio=1.5), ("bad.yaml", "budget_ratio")),
    "no_targets": (_netadapt(targets=[]), ("bad.yaml", "netadapt.targets")),
    "stem_only": (_netadapt(targets=["stem"]), ("bad.yaml", "netadapt.targets")),
    "unknown_target": (_netadapt(targets=["expand", "tail"]), ("bad.yaml", "targets")),
    "schedule": (_netadapt(schedule="linear"), ("bad.yaml", "schedule")),
    "selection": (_netadapt(selection="loss"), ("bad.yaml", "selection")),
    "short_term_list": (_netadapt(short_term=[1]), ("bad.yaml", "short_term")),
    "short_term_seed": (_netadapt(short_term={"seed": 1}), ("bad.yaml", "short_term.seed")),
    "long_term_key": (_netadapt(long_term={"epochz": 1}), ("bad.yaml", "long_term.epochz")),
    "zero_workers": (_netadapt(workers=0), ("bad.yaml", "workers")),
    "zero_step": (_netadapt(step_multiple=0), ("bad.yaml", "step_multiple")),
    "negative_iters": (_netadapt(max_iters=-1), ("bad.yaml", "max_iters")),
}


@pytest.mark.parametrize("case", NETADAPT_CASES)
def test_netadapt_config(sandbox: Path, case: str) -> None:
    content, expected = NETADAPT_CASES[case]
    bad = _write(sandbox / "inputs" / "bad.yaml", content)
    _expect_bad_input(sandbox, ["netadapt", "--config", str(bad), "--ckpt", "model.ckpt", "--data", "digits",
                                "-o", "runs/netadapt"], expected)


RESUMED_CONFIGS: dict[str, tuple[str | bytes, Expected]] = {
    "no_netadapt_section": ("other: 1\n", "config.yaml"),
    "list_document": ("- 1\n", "config.yaml"),
    "section_list": ("netadapt: [1, 2]\n", "config.yaml"),
    "malformed": ("netadapt: {budget_ratio: 0.5\n", ("config.yaml", "malformed YAML")),
    "binary": (BINARY, ("config.yaml", "not a text")),
    "bad_value": ("netadapt: {budget_ratio: 7}\ninputs: {}\n", "budget_ratio"),
    "no_inputs_section": ("netadapt: {budget_ratio: 0.5}\n", ("config.yaml", "inputs")),
}


@pytest.mark.parametrize("case", RESUMED_CONFIGS)
def test_netadapt_resume_with_a_damaged_saved_config(sandbox: Path, case: str) -> None:
    content, expected = RESUMED_CONFIGS[case]
    _write(sandbox / "runs" / "netadapt" / "config.yaml", content)
    _expect_bad_input(sandbox, ["netadapt", "--resume", "--ckpt", "model.ckpt", "--data", "digits",
                                "-o", "runs/netadapt"], expected)


# ----- 6. checkpoints -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real checkpoints of the tiny spec: with its spec embedded, without one, with a broken
    embedded spec, with a parameter left out; and one of another (wider) spec."""
    import mindspore as ms

    from nas.models.builder import build_network
    from nas.models.checkpoint import SPEC_KEY, save_weights

    folder = tmp_path_factory.mktemp("checkpoints")
    spec, other = tiny_spec(), tiny_spec(mid=24, name="wider")
    net = build_network(spec)
    made = {"good": save_weights(net, folder / "good.ckpt", spec),
            "no_spec": save_weights(net, folder / "no_spec.ckpt"),
            "other": save_weights(build_network(other), folder / "other.ckpt", other)}
    ms.save_checkpoint(net, str(folder / "broken_spec.ckpt"), append_dict={SPEC_KEY: "stem: [1"})
    entries = [{"name": p.name, "data": p.data} for p in net.get_parameters()][1:]
    ms.save_checkpoint(entries, str(folder / "partial.ckpt"), append_dict={SPEC_KEY: spec.to_yaml()})
    made.update(broken_spec=folder / "broken_spec.ckpt", partial=folder / "partial.ckpt")
    _write(folder / "other.yaml", other.to_yaml())
    return made


def _truncated(path: Path) -> bytes:
    raw = path.read_bytes()
    return raw[:len(raw) // 2]


CKPT_CASES: dict[str, tuple[Callable[[dict[str, Path]], bytes | None], list[str], Expected]] = {
    "missing": (lambda c: None, [], ("bad.ckpt", "not found")),
    "empty": (lambda c: b"", [], ("bad.ckpt", "not a readable")),
    "truncated": (lambda c: _truncated(c["good"]), [], ("bad.ckpt", "not a readable")),
    "text_file": (lambda c: b"stem: {channels: 8}\n", [], ("bad.ckpt", "not a readable")),
    "random_bytes": (lambda c: bytes(range(256)) * 64, [], ("bad.ckpt", "not a readable")),
    "png_header": (lambda c: b"\x89PNG\r\n\x1a\n" + b"\x00" * 500, [], ("bad.ckpt", "not a readable")),
    "no_embedded_spec": (lambda c: c["no_spec"].read_bytes(), [], ("bad.ckpt", "embeds none")),
    "broken_embedded_spec": (lambda c: c["broken_spec"].read_bytes(), [], "malformed YAML"),
    "parameter_missing": (lambda c: c["partial"].read_bytes(), [], ("bad.ckpt", "missing")),
    "other_spec_embedded": (lambda c: c["other"].read_bytes(), ["--spec", "spec.yaml"], ("bad.ckpt", "shape")),
    "wrong_shapes": (lambda c: c["good"].read_bytes(), ["--spec", "other.yaml"], ("bad.ckpt", "shape")),
}
CKPT_COMMANDS = {
    "validate": ["validate", "--ckpt", "inputs/bad.ckpt", "--data", "digits"],
    "export_model": ["export-model", "--ckpt", "inputs/bad.ckpt", "-o", "runs/exported"],
}


@pytest.mark.parametrize("command", CKPT_COMMANDS)
@pytest.mark.parametrize("case", CKPT_CASES)
def test_checkpoint(sandbox: Path, checkpoints: dict[str, Path], case: str, command: str) -> None:
    make, extra, expected = CKPT_CASES[case]
    shutil.copy(checkpoints["good"].parent / "other.yaml", sandbox / "other.yaml")
    content = make(checkpoints)
    if content is not None:
        _write(sandbox / "inputs" / "bad.ckpt", content)
    _expect_bad_input(sandbox, CKPT_COMMANDS[command] + extra, expected)


def test_a_directory_given_as_a_checkpoint(sandbox: Path) -> None:
    (sandbox / "inputs" / "dir.ckpt").mkdir(parents=True)
    _expect_bad_input(sandbox, ["validate", "--ckpt", "inputs/dir.ckpt", "--data", "digits"], "dir.ckpt")


def test_netadapt_names_an_unreadable_checkpoint(sandbox: Path) -> None:
    _write(sandbox / "inputs" / "bad.ckpt", b"not a checkpoint")
    _expect_bad_input(sandbox, ["netadapt", "--budget-ratio", "0.5", "--ckpt", "inputs/bad.ckpt", "--data", "digits",
                                "-o", "runs/netadapt"], ("bad.ckpt", "not a readable"))


# ----- 7. LUT and predictor directories ---------------------------------------------------------

def _stamp() -> Any:
    from latency.stamp import DeviceStamp

    return DeviceStamp(device="CPU", device_model="cpu", cpu_model="test", cores=2, threads=1, mindspore_version="2",
                       batch=1, resolution=16)


def _make_lut(folder: Path) -> None:
    from latency.lut import LatencyLUT

    LatencyLUT(folder, _stamp()).close()


def _meta(folder: Path, **changes: Any) -> None:
    path = folder / "meta.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def _entries(folder: Path, sql: str) -> None:
    with sqlite3.connect(folder / "entries.sqlite") as db:
        db.execute(sql)
    db.close()


def _predictor(folder: Path, text: str) -> None:
    (folder / "predictor.json").write_text(text)


LUT_CASES: dict[str, tuple[Callable[[Path], Any], Expected]] = {
    "missing_dir": (shutil.rmtree, ("lut", "not a latency look-up table")),
    "empty_dir": (_each(shutil.rmtree, Path.mkdir), ("lut", "not a latency look-up table")),
    "a_file": (_each(shutil.rmtree, lambda d: d.write_text("x")), ("lut", "not a latency look-up table")),
    "no_meta": (_unlink("meta.json"), ("lut", "meta.json")),
    "no_entries": (_unlink("entries.sqlite"), ("lut", "entries.sqlite")),
    "meta_not_json": (lambda d: (d / "meta.json").write_text("{not json"), "meta.json"),
    "meta_binary": (lambda d: (d / "meta.json").write_bytes(BINARY), "meta.json"),
    "meta_list": (lambda d: (d / "meta.json").write_text("[1, 2]"), "meta.json"),
    "meta_format": (lambda d: _meta(d, format="something-else"), "meta.json"),
    "meta_version": (lambda d: _meta(d, version=99), ("meta.json", "version")),
    "meta_no_stamp": (lambda d: _meta(d, stamp=...), ("meta.json", "stamp")),
    "meta_bad_stamp": (lambda d: _meta(d, stamp={"device": "TPU"}), "meta.json"),
    "meta_stamp_list": (lambda d: _meta(d, stamp=[1, 2]), "meta.json"),
    "meta_calibration": (lambda d: _meta(d, calibration={"a": "steep"}), ("meta.json", "calibration")),
    "entries_garbage": (lambda d: (d / "entries.sqlite").write_bytes(b"SQLite format 3\x00" + BINARY),
                        "entries.sqlite"),
    "entries_layout": (_each(_unlink("entries.sqlite"), lambda d: _entries(d, "CREATE TABLE entries (key TEXT)")),
                       ("entries.sqlite", "layout")),
    "entries_negative": (lambda d: _entries(d, "INSERT INTO entries VALUES ('k', 'mbconv', 'b', 8, 16, 8, 0, -1.0, "
                                               "0, 0, 0, 10, 0, 0)"), ("lut", "bad latency")),
    "predictor_not_json": (lambda d: _predictor(d, "{"), "predictor.json"),
    "predictor_format": (lambda d: _predictor(d, json.dumps({"format": "x", "version": 1})), "predictor.json"),
    "predictor_list": (lambda d: _predictor(d, "[]"), "predictor.json"),
    "predictor_fields": (lambda d: _predictor(d, json.dumps({"format": "nas-latency-predictor", "version": 1})),
                         "predictor.json"),
    "predictor_dir": (lambda d: (d / "predictor.json").mkdir(), "predictor.json"),
}


@pytest.mark.parametrize("case", LUT_CASES)
def test_lut_and_predictor_directory(sandbox: Path, case: str) -> None:
    damage, expected = LUT_CASES[case]
    lut = sandbox / "lut"
    _make_lut(lut)
    damage(lut)
    _expect_bad_input(sandbox, ["latency", "predict", "spec.yaml", "--lut", str(lut)], expected)


# ----- 8. the latency cache ------------------------------------------------------------------------

def _measure_stamp_key() -> str:
    """The stamp key ``nas latency measure spec.yaml`` looks the tiny spec up under."""
    from latency.config import LatencyConfig, make_backend

    return make_backend(LatencyConfig(cache=False)).stamp(tiny_spec()).key


def _cache_db(path: Path, *statements: str, rows: tuple[tuple[Any, ...], ...] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)
        for row in rows:
            db.execute(f"INSERT INTO results VALUES ({', '.join('?' * len(row))})", row)
    db.close()


_RESULTS = ("CREATE TABLE results (arch_id TEXT NOT NULL, stamp_key TEXT NOT NULL, result TEXT NOT NULL, "
            "spec_name TEXT, measured_at REAL NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (arch_id, stamp_key))")


def _bad_row(result: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        _cache_db(path, _RESULTS, rows=((tiny_spec().arch_id, _measure_stamp_key(), result, "tiny", 0.0, 1),))
    return write


CACHE_CASES: dict[str, tuple[Callable[[Path], Any], Expected]] = {
    "garbage": (lambda p: _write(p, BINARY), ("latency.db", "unreadable")),
    "text_file": (lambda p: _write(p, "arch_id,ms\nabc,1.0\n"), ("latency.db", "unreadable")),
    "truncated_header": (lambda p: _write(p, b"SQLite format 3\x00\x10\x00"), ("latency.db", "unreadable")),
    "a_directory": (lambda p: p.mkdir(parents=True), ("latency.db", "not a file")),
    "foreign_database": (lambda p: _cache_db(p, "CREATE TABLE users (name TEXT)"),
                         ("latency.db", "something else")),
    "results_layout": (lambda p: _cache_db(p, "CREATE TABLE results (arch_id TEXT)"), ("latency.db", "layout")),
    "v1_layout": (lambda p: _cache_db(p, "CREATE TABLE measurements (arch_id TEXT, ms REAL)"),
                  ("latency.db", "layout")),
    "row_not_json": (_bad_row("{not json"), ("latency.db", "bad row")),
    "row_list": (_bad_row("[1, 2]"), ("latency.db", "bad row")),
    "row_null": (_bad_row("null"), ("latency.db", "bad row")),
    "row_missing_keys": (_bad_row(json.dumps({"median_ms": 1.0})), ("latency.db", "bad row")),
    "row_bad_stamp": (_bad_row(json.dumps({"median_ms": 1.0, "p10_ms": 1.0, "p90_ms": 1.0, "iqr_ms": 0.0,
                                           "repeats": 10, "cv": 0.0, "stamp": {"device": "TPU"}})),
                      ("latency.db", "bad row")),
}


@pytest.mark.parametrize("where", ["default", "flag"])
@pytest.mark.parametrize("case", CACHE_CASES)
def test_latency_cache(sandbox: Path, case: str, where: str) -> None:
    make, expected = CACHE_CASES[case]
    path = sandbox / "cache" / "latency.db" if where == "default" else sandbox / "inputs" / "latency.db"
    make(path)
    flag = [] if where == "default" else ["--cache", str(path)]
    _expect_bad_input(sandbox, ["latency", "measure", "spec.yaml", *flag], expected)


def test_a_cache_directory_that_is_a_file(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(sandbox / "inputs" / "not_a_dir", "x")
    monkeypatch.setenv("NAS_CACHE_DIR", str(sandbox / "inputs" / "not_a_dir"))
    _expect_bad_input(sandbox, ["latency", "measure", "spec.yaml"], "not_a_dir")


# ----- 9. dataset directories ---------------------------------------------------------------------

def _truncate_gz(folder: Path, name: str) -> None:
    path = folder / f"{name}.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])


def _rewrite_idx(folder: Path, name: str, change: Callable[[bytes], bytes]) -> None:
    path = folder / f"{name}.gz"
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    with gzip.open(path, "wb") as handle:
        handle.write(change(raw))


def _one_image(folder: Path) -> None:
    shutil.rmtree(folder)
    write_image_folder(folder, classes=1, per_class=1, with_val=False)


DATA_CASES: dict[str, tuple[Callable[[Path], Any], Expected]] = {
    "missing": (lambda d: None, ("data", "not found")),
    "a_file": (lambda d: _write(d, "not a folder"), ("data", "not found")),
    "empty": (lambda d: d.mkdir(), ("data", "holds neither")),
    "loose_files": (_each(lambda d: _write(d / "a.txt", "x"), lambda d: _write(d / "b.csv", "1,2")),
                    ("data", "holds neither")),
    "class_dirs_without_images": (lambda d: _write(d / "cat" / "x.txt", "x"),
                                  ("data", "holds neither")),
    "train_without_classes": (lambda d: _write(d / "train" / "x.png", b"x"), ("train", "no class directories")),
    "one_image": (lambda d: write_image_folder(d, classes=1, per_class=1, with_val=False), ("data", "need at least 2")),
    "idx_truncated_gz": (_each(write_idx, lambda d: _truncate_gz(d, "train-images-idx3-ubyte")),
                         ("train-images-idx3-ubyte.gz", "truncated")),
    "idx_count_mismatch": (lambda d: write_idx(d, labels_short_by=3), ("labels", "must match")),
    "idx_bad_magic": (_each(write_idx, lambda d: _rewrite_idx(d, "train-images-idx3-ubyte",
                                                              lambda r: b"\0\0\0\0" + r[4:])),
                      ("train-images-idx3-ubyte", "not an IDX image file")),
    "idx_short_body": (_each(write_idx, lambda d: _rewrite_idx(d, "train-labels-idx1-ubyte", lambda r: r[:-5])),
                       ("train-labels-idx1-ubyte", "header promises")),
    "idx_plain_truncated": (_each(lambda d: write_idx(d, gz=False),
                                  lambda d: _write(d / "train-images-idx3-ubyte",
                                                   (d / "train-images-idx3-ubyte").read_bytes()[:100])),
                            ("train-images-idx3-ubyte", "header promises")),
    "idx_missing_test_labels": (_each(lambda d: write_idx(d, gz=False), _unlink("t10k-labels-idx1-ubyte")),
                                ("t10k-labels-idx1-ubyte", "is missing")),
    "cifar_partial_record": (lambda d: _write(d / "cifar-10-batches-bin" / "data_batch_1.bin", b"\x01" * 5000),
                             ("data_batch_1.bin", "whole number")),
    "cifar_short_file": (lambda d: _write(d / "cifar-10-batches-bin" / "data_batch_1.bin", _sparse(9000 * 3073)),
                         ("data_batch_1.bin", "9000 records")),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_dataset_directory(sandbox: Path, case: str) -> None:
    make, expected = DATA_CASES[case]
    data = sandbox / "inputs" / "data"
    data.parent.mkdir(parents=True, exist_ok=True)
    make(data)
    # The unpacked copies of gzipped IDX files are the cache's to keep (a later open reuses them).
    _expect_bad_input(sandbox, ["train", "--spec", "spec.yaml", "--recipe", "recipe.yaml", "--data", str(data),
                                "-o", "runs/train"], expected, skip=("cache/datasets",))


def test_a_named_dataset_with_a_broken_copy(sandbox: Path) -> None:
    folder = sandbox / "datasets" / "mnist"
    write_idx(folder)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    _expect_bad_input(sandbox, ["train", "--spec", "spec.yaml", "--recipe", "recipe.yaml", "--data", "mnist",
                                "-o", "runs/train"], ("train-labels-idx1-ubyte", "is missing"))


def test_a_named_dataset_that_is_nowhere(sandbox: Path) -> None:
    _expect_bad_input(sandbox, ["train", "--spec", "spec.yaml", "--recipe", "recipe.yaml", "--data", "fashion-mnist",
                                "-o", "runs/train"], ("Fashion-MNIST not found", "fashion-mnist"))


def test_a_cifar_directory_is_checked_before_training(sandbox: Path) -> None:
    root = write_cifar10(sandbox / "inputs" / "cifar", per_batch=10)
    _expect_bad_input(sandbox, ["train", "--spec", "spec.yaml", "--recipe", "recipe.yaml", "--data", str(root),
                                "-o", "runs/train"], ("data_batch_1.bin", "10 records"))


# ----- 10. command-line arguments ---------------------------------------------------------------

CLI_CASES: dict[str, tuple[list[str], Expected]] = {
    "no_command": ([], "COMMAND"),
    "unknown_command": (["frobnicate"], "frobnicate"),
    "unknown_flag": (["spec", "show", "mnasnet_a1", "--colour"], "--colour"),
    "spec_width_zero": (["spec", "show", "mnasnet_a1", "--width", "0"], "width"),
    "spec_width_negative": (["spec", "export", "mnasnet_a1", "--width", "-1.5"], "width"),
    "spec_width_nan": (["spec", "show", "mnasnet_a1", "--width", "nan"], "width"),
    "spec_width_inf": (["spec", "show", "mnasnet_a1", "--width", "inf"], "width"),
    "spec_width_text": (["spec", "show", "mnasnet_a1", "--width", "wide"], "--width"),
    "spec_resolution_negative": (["spec", "show", "mnasnet_a1", "--resolution", "-32"], "resolution"),
    "spec_classes_zero": (["spec", "export", "mnasnet_a1", "--num-classes", "0"], "num_classes"),
    "spec_export_resolution_zero": (["spec", "export", "mnasnet_a1", "--resolution", "0"], "resolution"),
    "space_seed_negative": (["space", "sample", "mnasnet", "--seed", "-1"], "seed"),
    "space_seed_text": (["space", "sample", "mnasnet", "--seed", "x"], "--seed"),
    "space_set_no_value": (["space", "show", "mnasnet", "--set", "width"], "--set"),
    "space_set_bad_option": (["space", "show", "mnasnet", "--set", "width=-2"], "width"),
    "space_unknown": (["space", "show", "resnet"], "resnet"),
    "latency_batch_zero": (["latency", "measure", "spec.yaml", "--batch", "0"], "batch"),
    "latency_threads_negative": (["latency", "measure", "spec.yaml", "--threads", "-2"], "threads"),
    "latency_warmup_negative": (["latency", "measure", "spec.yaml", "--warmup", "-1"], "warmup"),
    "latency_tolerance_zero": (["latency", "measure", "spec.yaml", "--tolerance", "0"], "tolerance"),
    "latency_repeats_order": (["latency", "measure", "spec.yaml", "--min-repeats", "5", "--max-repeats", "2"],
                              "max_repeats"),
    "latency_timeout_text": (["latency", "measure", "spec.yaml", "--timeout", "soon"], "--timeout"),
    "latency_resolution_zero": (["latency", "measure", "spec.yaml", "--resolution", "0"], "resolution"),
    "latency_lut_no_value": (["latency", "predict", "spec.yaml", "--lut"], "--lut"),
    "search_trials_zero": (["search", "-c", "campaign.yaml", "--trials", "0"], "trials"),
    "search_workers_negative": (["search", "-c", "campaign.yaml", "--workers", "-1"], "workers"),
    "search_trials_text": (["search", "-c", "campaign.yaml", "--trials", "many"], "--trials"),
    "search_no_config": (["search"], "--config"),
    "train_seed_negative": (["train", "--spec", "spec.yaml", "--recipe", "recipe.yaml", "--data", "digits",
                             "--seed", "-1", "-o", "runs/train"], "seed"),
    "train_device": (["train", "--spec", "spec.yaml", "--recipe", "recipe.yaml", "--data", "digits",
                      "--device", "TPU"], "--device"),
    "validate_batch_zero": (["validate", "--ckpt", "model.ckpt", "--data", "digits", "--batch-size", "0"],
                            "batch"),
    "validate_resolution_negative": (["validate", "--ckpt", "model.ckpt", "--data", "digits", "--resolution", "-8"],
                                     "resolution"),
    "export_format": (["export-model", "--ckpt", "model.ckpt", "--format", "PNG", "-o", "runs/x"], "--format"),
    "export_batch_zero": (["export-model", "--ckpt", "model.ckpt", "--batch-size", "0", "-o", "runs/x"], "batch"),
    "export_resolution_negative": (["export-model", "--ckpt", "model.ckpt", "--resolution", "-8", "-o", "runs/x"],
                                   "resolution"),
    "netadapt_ratio_negative": (["netadapt", "--ckpt", "model.ckpt", "--data", "digits", "--budget-ratio", "-0.5",
                                 "-o", "runs/na"], "budget_ratio"),
    "netadapt_two_budgets": (["netadapt", "--ckpt", "model.ckpt", "--data", "digits", "--budget-ratio", "0.5",
                              "--budget-ms", "3", "-o", "runs/na"], "--budget-ms"),
    "netadapt_workers_zero": (["netadapt", "--ckpt", "model.ckpt", "--data", "digits", "--budget-ratio", "0.5",
                               "--workers", "0", "-o", "runs/na"], "workers"),
    "netadapt_steps_negative": (["netadapt", "--ckpt", "model.ckpt", "--data", "digits", "--budget-ratio", "0.5",
                                 "--short-term-steps", "-3", "-o", "runs/na"], "short_term_steps"),
    "netadapt_targets_empty": (["netadapt", "--ckpt", "model.ckpt", "--data", "digits", "--budget-ratio", "0.5",
                                "--targets", ",", "-o", "runs/na"], "targets"),
    "netadapt_lr_text": (["netadapt", "--ckpt", "model.ckpt", "--data", "digits", "--budget-ratio", "0.5",
                          "--lr", "fast", "-o", "runs/na"], "--lr"),
    "netadapt_no_output": (["netadapt", "--ckpt", "model.ckpt", "--data", "digits", "--budget-ratio", "0.5"],
                           "--output"),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_command_line_arguments(sandbox: Path, checkpoints: dict[str, Path], case: str) -> None:
    argv, expected = CLI_CASES[case]
    shutil.copy(checkpoints["good"], sandbox / "model.ckpt")
    _write(sandbox / "campaign.yaml", _campaign())
    _expect_bad_input(sandbox, argv, expected)
