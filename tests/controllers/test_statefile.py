"""Controller state files: JSON that round-trips exact types, refuses objects, and is checked
against the digests a campaign's study records."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from controllers import StateFileError, StateMismatchError, make_controller, save_state
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
