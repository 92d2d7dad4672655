"""The one table of output columns (`schema.OUTPUT_COLUMNS`) agrees with the row type, the
row's JSON Schema, the README and the head registry it is derived from."""

import dataclasses
import json
import re
from importlib.resources import files
from pathlib import Path

from qualaudit.heads import HEAD_SPECS
from qualaudit.schema import OUTPUT_COLUMNS, ROW_FIELDS, SCHEMA_VERSION, TranscriptScore

ROW_SCHEMA = json.loads((files("qualaudit") / "row.schema.json").read_text())
README = (Path(__file__).parents[1] / "README.md").read_text()


def test_the_table_is_the_row_type():
    fields = [f.name for f in dataclasses.fields(TranscriptScore)]
    assert sorted(fields + ["schema_version"]) == sorted(ROW_FIELDS)
    assert len(set(ROW_FIELDS)) == len(ROW_FIELDS)


def test_the_table_follows_the_head_registry():
    kinds = {c.name: c.kind for c in OUTPUT_COLUMNS}
    for spec in HEAD_SPECS.values():
        if spec.level == "conversation":
            assert kinds[spec.target] == "float"
            assert (f"{spec.target}_dist" in kinds) == (spec.kind == "categorical")
            assert (f"{spec.target}_turn" in kinds) == (spec.pooling == "causal")


def test_the_json_schema_and_the_readme_list_every_column():
    assert set(ROW_SCHEMA["properties"]) == set(ROW_FIELDS)
    assert set(ROW_SCHEMA["required"]) == set(ROW_FIELDS) - {"turns", "metadata"}
    documented = set(re.findall(r"^\| `([a-z_]+)`", README, re.M))
    assert set(ROW_FIELDS) <= documented | {"resolution_dist", "satisfaction_dist"}
    assert "`resolution_dist`, `satisfaction_dist`" in README
    assert re.fullmatch(ROW_SCHEMA["properties"]["schema_version"]["pattern"], SCHEMA_VERSION)
