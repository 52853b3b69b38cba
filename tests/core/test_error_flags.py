"""Library errors name parameters; the command line shows its flags for them."""

from __future__ import annotations

import pytest

from crystalflow.cli import flag_message, main
from crystalflow.crystal_tasks.composition import atom_types_for
from crystalflow.errors import CheckpointError, InputError


def test_library_errors_name_parameters_not_flags():
    with pytest.raises(InputError) as info:
        atom_types_for("NaCl", num_atoms=2, formula_units=1)
    assert "--" not in str(info.value) and "num_atoms" in str(info.value)
    assert info.value.parameters == ("num_atoms", "formula_units")
    assert flag_message(info.value) == "give --num-atoms or --formula-units, not both"


def test_flag_message_maps_whole_names_only():
    exc = InputError("num_samples must be >= 1 (num_samples_max is fine)", parameters=("num_samples",))
    assert flag_message(exc) == "--num-samples must be >= 1 (num_samples_max is fine)"
    assert flag_message(CheckpointError("out_dir is a file", parameters=("out_dir",))) == "--out is a file"
    assert flag_message(ValueError("plain")) == "plain"


def test_pipeline_names_num_outputs_and_the_cli_num_samples():
    from crystalflow.crystal_tasks.pipeline import predict_compositions

    with pytest.raises(InputError) as info:
        predict_compositions([{"Na": 1, "Cl": 1}], num_outputs=0)
    assert str(info.value) == "num_outputs must be >= 1, got 0" and info.value.parameters == ("num_outputs",)
    assert flag_message(info.value) == "--num-samples must be >= 1, got 0"


def test_the_cli_prints_flags(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("CRYSTALFLOW_DATA", raising=False)
    assert main(["train", "--dataset", "perov_5", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == "error: no data directory: give --data-dir or set CRYSTALFLOW_DATA"
