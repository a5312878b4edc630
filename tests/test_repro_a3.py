"""fastdl.repro.a3: the XOR table shows on which side of 0.5 every output lies."""

import json

import pytest

from fastdl import xor
from fastdl.repro import a3


@pytest.mark.parametrize("value, text", [(0.50004, "0.50004"), (0.49996, "0.49996"),
                                         (0.5001147, "0.5001"), (0.4999996, "0.4999996"),
                                         (0.32876, "0.3288"), (0.5, "0.5")])
def test_format_output_never_rounds_to_one_half(value, text):
    assert a3.format_output(value) == text


def test_xor_table_outputs_are_on_their_targets_side(tmp_path):
    a3.run(out_dir=tmp_path, quick=True)
    table = json.loads((tmp_path / "a3" / "xor_training.json").read_text())
    assert table["headers"][4:] == ["out(0,0), target 0", "out(0,1), target 1",
                                    "out(1,0), target 1", "out(1,1), target 0"]
    for row in table["rows"]:
        for cell, target in zip(row[4:], xor.TARGETS):
            assert (float(cell) > 0.5) == (target == 1), (row, cell)


def test_learning_rates_start_from_the_uniform_weights(tmp_path):
    """The write-up's caption: "Left: varying learning rates with uniform initialization. Right:
    varying initializations with learning rate 0.3"."""
    result = a3.run(out_dir=tmp_path, quick=True)
    assert [(s["init"], s["lr"], s["n_iterations"]) for s in result["settings"]] == [
        ("uniform", 0.3, 5273), ("uniform", 0.6, 2638), ("uniform", 0.8, 1980), ("normal", 0.3, 7899)]
    # Like every assignment: a summary.json among the files, and whether the run was quick.
    summary = json.loads((tmp_path / "a3" / "summary.json").read_text())
    assert str(tmp_path / "a3" / "summary.json") in result["files"]
    assert result["quick"] is True and summary["quick"] is True
    assert summary["settings"][0]["name"] == "uniform lr=0.3"
    # The lazy search's rate is over the time the timings table records.
    lazy = result["lazy_search"]
    assert lazy["seconds"] == result["timings"]["lazy_search"]
    assert lazy["draws_per_second"] == lazy["total_draws"] / lazy["seconds"]


def test_run_takes_only_its_own_parameters():
    with pytest.raises(TypeError):
        a3.run(out_dir="unused", epochs=3)
