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
