"""The ``nas space`` commands, run as a user would."""
from __future__ import annotations

import pytest
import yaml

from nas.spec import ArchSpec
from search_spaces import get_space
from tests.support.cli import run_nas, run_nas_here


def test_space_list_and_show() -> None:
    listed = run_nas("space", "list")
    assert listed.returncode == 0 and listed.stdout.split() == ["mnasnet", "mobilenet_v3", "mobilenet_v3_small"]
    shown = run_nas("space", "show", "mnasnet")
    assert shown.returncode == 0, shown.stderr
    assert f"size {432 ** 7}" in shown.stdout and "42 decisions" in shown.stdout
    assert "b0_op       conv [dwsep] mbconv_e3 mbconv_e6" in shown.stdout
    assert "params 3,504,872" in shown.stdout  # the centre is MobileNetV2


def test_space_sample_decode_and_encode_round_trip(tmp_path) -> None:
    spec_file = tmp_path / "spec.yaml"
    sampled = run_nas("space", "sample", "mobilenet_v3", "--seed", "3", "--set", "kernels=[3,5,[3,5]]",
                      "-o", str(spec_file))
    assert sampled.returncode == 0, sampled.stderr
    point = yaml.safe_load(sampled.stdout.split("wrote")[0])
    space = get_space("mobilenet_v3", kernels=[3, 5, [3, 5]])
    assert ArchSpec.from_yaml(spec_file) == space.decode(point)
    encoded = run_nas("space", "encode", "mobilenet_v3", str(spec_file), "--set", "kernels=[3,5,[3,5]]")
    assert encoded.returncode == 0, encoded.stderr
    assert yaml.safe_load(encoded.stdout) == space.encode(space.decode(point))
    (tmp_path / "point.yaml").write_text(encoded.stdout)
    decoded = run_nas("space", "decode", "mobilenet_v3", str(tmp_path / "point.yaml"), "--set", "kernels=[3,5,[3,5]]")
    assert decoded.returncode == 0 and ArchSpec.from_yaml(decoded.stdout) == ArchSpec.from_yaml(spec_file)


@pytest.mark.parametrize("args,message", [
    (["space", "show", "nasbench"], "unknown space 'nasbench'"),
    (["space", "show", "mnasnet", "--set", "colour=red"], "space option 'colour'"),
    (["space", "show", "mnasnet", "--set", "kernels"], "--set expects name=value"),
    (["space", "encode", "mnasnet", "missing.yaml"], "spec file not found"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args: list[str], message: str) -> None:
    result = run_nas_here(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_encoding_a_spec_outside_the_space_names_the_field(tmp_path) -> None:
    exported = run_nas_here("spec", "export", "mobilenet_v3_large", "-o", str(tmp_path / "v3.yaml"))
    assert exported.returncode == 0
    result = run_nas_here("space", "encode", "mnasnet", str(tmp_path / "v3.yaml"))
    assert result.returncode == 2 and "not in space 'mnasnet': blocks" in result.stderr
    (tmp_path / "point.yaml").write_text("b0_op: conv\n")
    result = run_nas_here("space", "decode", "mnasnet", str(tmp_path / "point.yaml"))
    assert result.returncode == 2 and "decision 'b0_kernel': missing" in result.stderr
