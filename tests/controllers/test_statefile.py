"""Controller state files: JSON that round-trips exact types, refuses objects, and is checked
against the digests a campaign's study records."""
from __future__ import annotations

import hashlib
import json
import math
import random
import re

import numpy as np
import pytest

from controllers import ControllerError, StateFileError, StateMismatchError, load_state, make_controller, save_state
from controllers.statefile import decode, encode, read_state
from search_spaces import get_space


def test_exact_types_survive_the_round_trip() -> None:
    generator = random.Random(3)
    state = {"tuple": (1, 2.5, "x"), "numbers": {4: [1, 2], 7: (3,)}, "weights": np.arange(6, dtype=np.float32)
             .reshape(2, 3), "counts": np.array([1, 2], dtype=np.uint32), "scalar": np.float64(0.25),
             "nan": math.nan, "inf": -math.inf, "python_rng": generator.getstate(), "$odd": 1, "none": None}
    restored = decode(json.loads(json.dumps(encode(state))))
    assert restored["tuple"] == (1, 2.5, "x") and isinstance(restored["tuple"], tuple)
    assert restored["numbers"] == {4: [1, 2], 7: (3,)}
    assert restored["weights"].dtype == np.float32 and np.array_equal(restored["weights"], state["weights"])
    assert restored["counts"].dtype == np.uint32
    assert restored["scalar"] == 0.25 and isinstance(restored["scalar"], float)
    assert math.isnan(restored["nan"]) and restored["inf"] == -math.inf and restored["$odd"] == 1
    again = random.Random()
    again.setstate(restored["python_rng"])  # a tuple again, as setstate needs
    assert [again.random() for _ in range(3)] == [generator.random() for _ in range(3)]


def test_objects_are_refused_with_their_place_in_the_state() -> None:
    with pytest.raises(StateFileError, match=r"state\.policy\[1\]: a object cannot be saved"):
        encode({"policy": [1, object()]})
    with pytest.raises(StateFileError, match="dtype object"):
        encode({"a": np.array([None, 1], dtype=object)})
    with pytest.raises(StateFileError, match="unknown tag"):
        decode({"$class": "os.system"})
    with pytest.raises(StateFileError, match="malformed array"):
        decode({"$array": ["|O", [1], "AAAA"]})


@pytest.mark.parametrize("name", ["rl", "evolution", "tpe", "random"])
def test_a_saved_state_is_json_and_its_digest_is_checked(name: str, tmp_path) -> None:
    space = get_space("mnasnet")
    controller = make_controller(name, space, seed=2)
    for _ in range(3):
        trial = controller.ask()
        controller.tell(trial, 0.5)
    path = tmp_path / "controller.json"
    digest = save_state(controller, path)
    json.loads(path.read_text())  # plain JSON: nothing in it can run
    read_state(path, digests=[digest])
    with pytest.raises(StateMismatchError, match="not the one this campaign's study recorded"):
        read_state(path, digests=["0" * 64])
    path.write_text(path.read_text().replace('"seed": 2', '"seed": 3'))  # tampered
    with pytest.raises(StateMismatchError):
        read_state(path, digests=[digest])


def test_a_pickle_is_never_loaded(tmp_path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "controller.json"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")  # a pickle that runs a command
    with pytest.raises(StateFileError, match="not a JSON state"):
        read_state(path)
    assert not marker.exists()


def _rl_after(updates: int, batch_size: int = 4):
    controller = make_controller("rl", get_space("mnasnet"), seed=1, batch_size=batch_size)
    for index in range(updates * batch_size):
        controller.tell(controller.ask(), 0.1 * (index % 7))
    return controller


def test_large_arrays_are_blobs_named_by_their_digest_and_read_back_exactly(tmp_path) -> None:
    controller = _rl_after(updates=1)
    path = tmp_path / "controller.json"
    digest = save_state(controller, path)
    blobs = tmp_path / "controller.json.arrays"
    names = sorted(entry.name for entry in blobs.iterdir())
    assert names and all(hashlib.sha256((blobs / name).read_bytes()).hexdigest() == name for name in names)
    assert len(path.read_bytes()) < sum((blobs / name).stat().st_size for name in names)  # not inlined
    assert '"$blob"' in path.read_text()
    restored = make_controller("rl", get_space("mnasnet"), seed=1, batch_size=4)
    load_state(restored, path, digests=[digest])
    for _ in range(6):  # the same proposals, across an update
        assert restored.ask().decisions == controller.ask().decisions


def test_a_save_keeps_only_the_blobs_its_state_references(tmp_path) -> None:
    controller = _rl_after(updates=1)
    path = tmp_path / "controller.json"
    save_state(controller, path)
    blobs = tmp_path / "controller.json.arrays"
    first = {entry.name for entry in blobs.iterdir()}
    save_state(controller, path)  # unchanged weights: nothing new is written, nothing is deleted
    assert {entry.name for entry in blobs.iterdir()} == first
    for index in range(4):  # one more update changes the weights and moments
        controller.tell(controller.ask(), 0.2 * index)
    save_state(controller, path)
    second = {entry.name for entry in blobs.iterdir()}
    assert second != first and len(second) == len(first)
    referenced = set(re.findall(r'"([0-9a-f]{64})"', path.read_text()))
    assert second == referenced


def test_a_changed_or_missing_blob_is_refused(tmp_path) -> None:
    path = tmp_path / "controller.json"
    digest = save_state(_rl_after(updates=1), path)
    blobs = sorted((tmp_path / "controller.json.arrays").iterdir())
    original = blobs[0].read_bytes()
    blobs[0].write_bytes(bytes([original[0] ^ 1]) + original[1:])  # same size, other bytes
    with pytest.raises(StateMismatchError, match="does not match its SHA-256"):
        read_state(path, digests=[digest])
    blobs[0].write_bytes(original + b"\0")
    with pytest.raises(StateMismatchError, match="bytes"):
        read_state(path, digests=[digest])
    blobs[0].unlink()
    with pytest.raises(StateFileError, match="is missing"):
        read_state(path, digests=[digest])
    with pytest.raises(StateFileError, match="no blob directory"):
        decode({"$blob": ["<f4", [2], "0" * 64]})
    path.write_text(path.read_text().replace('"$blob": ["<f4"', '"$blob": ["|O"', 1))
    with pytest.raises(StateFileError, match="malformed array blob"):
        read_state(path)


def test_the_rl_history_is_saved_as_one_table_and_read_back_as_its_entries(tmp_path) -> None:
    controller = _rl_after(updates=3)
    path = tmp_path / "controller.json"
    digest = save_state(controller, path)
    restored = make_controller("rl", get_space("mnasnet"), seed=1, batch_size=4)
    load_state(restored, path, digests=[digest])
    assert len(controller.history) == 3 and restored.history == controller.history
    assert [entry["update"] for entry in restored.history] == [0, 1, 2]
    state = controller.state_dict()
    state["history"] = [dict(entry) for entry in controller.history]  # what earlier versions saved
    earlier = make_controller("rl", get_space("mnasnet"), seed=1, batch_size=4)
    earlier.load_state_dict(state)
    assert earlier.history == controller.history
    state["history"] = {"fields": ["update"], "rows": np.zeros((1, 1))}
    with pytest.raises(ControllerError, match="history"):
        earlier.load_state_dict(state)
