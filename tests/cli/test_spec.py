"""The ``nas spec`` and ``nas import`` commands, run as a user would."""
from __future__ import annotations

import time

import pytest

from nas.spec import ArchSpec
from search_spaces import references
from tests.support.cli import run_nas, run_nas_here


def test_spec_show_prints_table_and_totals() -> None:
    result = run_nas("spec", "show", "mnasnet_a1")
    assert result.returncode == 0, result.stderr
    assert "blocks.6.0" in result.stdout and "3,887,038" in result.stdout and "311.6M" in result.stdout


def test_spec_export_writes_scaled_yaml(tmp_path) -> None:
    out = tmp_path / "v3s.yaml"
    result = run_nas("spec", "export", "mobilenet_v3_small", "--width", "0.75", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert ArchSpec.from_yaml(out) == references.get("mobilenet_v3_small", 0.75)
    shown = run_nas("spec", "show", str(out))
    assert shown.returncode == 0 and "1,663,120" in shown.stdout


@pytest.mark.parametrize("args,message", [
    (["spec", "show", "mnasnet_z9"], "unknown reference 'mnasnet_z9'"),
    (["spec", "show", "missing.yaml"], "spec file not found"),
    (["spec", "export", "mnasnet_a1", "--width", "-1"], "width"),
    (["import", "mindcv", "resnet50", "--ckpt", "x.ckpt", "--out", "o"], "unknown MindCV model 'resnet50'"),
    (["import", "mindcv", "mnasnet_100", "--ckpt", "missing.ckpt", "--out", "o"], "not found"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args: list[str], message: str) -> None:
    result = run_nas_here(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_malformed_spec_files_exit_2(tmp_path) -> None:
    cases = {
        "syntax.yaml": "stem: {channels: 16\n",
        "unknown.yaml": "stem: {channels: 16}\nblocks: [{kind: dwsep, out: 16}]\nhead: {kind: mnasnet, channels: 32}\n"
                        "colour: red\n",
        "kernel.yaml": "stem: {channels: 16}\nblocks: [{kind: dwsep, out: 16, kernel: 2}]\n"
                       "head: {kind: mnasnet, channels: 32}\n",
    }
    expected = {"syntax.yaml": "malformed YAML", "unknown.yaml": "colour", "kernel.yaml": "blocks[0].kernel"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        result = run_nas_here("spec", "show", str(tmp_path / name))
        assert result.returncode == 2 and expected[name] in result.stderr


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(10))


def test_hostile_yaml_inputs_fail_fast_with_the_file_named(tmp_path) -> None:
    """A binary file, a 100 MB file and an alias bomb, given as a spec and as a campaign config:
    one line naming the file, exit 2, bounded time, and the files unchanged."""
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    with (tmp_path / "huge.yaml").open("wb") as handle:  # sparse: 100 MB without writing them
        handle.truncate(100 * 1024 * 1024)
    (tmp_path / "bomb.yaml").write_text(BOMB)
    expected = {"binary.yaml": "not UTF-8", "huge.yaml": "104,857,600 bytes", "bomb.yaml": "YAML aliases"}
    before = {name: (tmp_path / name).stat().st_mtime_ns for name in expected}
    for name, message in expected.items():
        for command in (("spec", "show"), ("search", "-c")):
            started = time.perf_counter()
            result = run_nas_here(*command, str(tmp_path / name), cwd=tmp_path)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2, (name, command, result.stderr[-800:])
            assert len(lines) == 1 and message in lines[0] and name in lines[0], (name, command, lines)
            assert time.perf_counter() - started < 10
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in expected} == before
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_import_mindcv_command(tmp_path) -> None:
    import mindcv
    import mindspore as ms

    ms.save_checkpoint(mindcv.create_model("mobilenet_v3_small_075", num_classes=4), str(tmp_path / "m.ckpt"))
    result = run_nas("import", "mindcv", "mobilenet_v3_small_075", "--ckpt", str(tmp_path / "m.ckpt"),
                     "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    spec = ArchSpec.from_yaml(tmp_path / "out" / "spec.yaml")
    assert spec == references.get("mobilenet_v3_small", 0.75).replace(num_classes=4)
    assert (tmp_path / "out" / "model.ckpt").is_file()
