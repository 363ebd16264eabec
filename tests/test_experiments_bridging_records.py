"""statgan reproduce bridging from records: the ``small`` and ``tiny`` budgets keep producing the same
numbers from the same records (the committed report, byte for byte), records round-trip through
their typed form, the cell specs keep their hashes, and a reproduction is checked against the
Reproduction protocol when it is registered.

The ``small`` records and report are the committed ones (docs/reproductions/bridging-small.jsonl and
bridging.md). The ``tiny`` budget has none committed: tests/data/bridging-tiny-records.jsonl is the
records file of one ``--budget tiny`` run and tests/data/bridging-tiny.md the report the code before
``experiments/bridging.py`` became a package wrote from it.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from statgan.cli import main
from statgan.errors import StatganError
from statgan.experiments import REPRODUCTIONS, bridging, grid
from statgan.experiments.protocol import (METHODS, REQUIRED_BUDGETS, ReproductionError, ReproductionRegistry,
                                          protocol_problems)

ROOT = Path(__file__).resolve().parents[1]
SMALL_RECORDS = ROOT / "docs" / "reproductions" / "bridging-small.jsonl"
SMALL_REPORT = ROOT / "docs" / "reproductions" / "bridging.md"
TINY_RECORDS = ROOT / "tests" / "data" / "bridging-tiny-records.jsonl"
TINY_REPORT = ROOT / "tests" / "data" / "bridging-tiny.md"

#: the report's two lines that quote the run's inputs rather than anything computed from records: the
#: command line and the machine it ran on (``statgan reproduce`` passes both in)
INPUT_LINES = ("- command: ", "- machine: ")


def _quoted(report: str, prefix: str) -> str:
    line = next(line for line in report.splitlines() if line.startswith(prefix))
    return line[len(prefix):]


@pytest.mark.parametrize("budget, records, report", [("small", SMALL_RECORDS, SMALL_REPORT),
                                                     ("tiny", TINY_RECORDS, TINY_REPORT)])
def test_records_rebuild_the_committed_report_byte_for_byte(budget, records, report, tmp_path):
    # the report's only inputs besides the records are the command and the machine it quotes: taken
    # from the committed report, everything else must come out identical
    committed = report.read_text(encoding="utf-8")
    cells = bridging.cells(budget)
    found = grid.read_records([records], cells)
    assert len(found) == len(cells)  # every cell's spec hash still matches its committed record
    text = bridging.write_report(budget, cells, found, tmp_path / "r.md", _quoted(committed, "- command: ")[1:-1], 0.0,
                                 _quoted(committed, "- machine: "))
    assert text == committed
    assert (tmp_path / "r.md").read_bytes() == report.read_bytes()


def test_collect_from_the_committed_small_records_gives_the_committed_report(tmp_path, capsys):
    # the command line of the README: everything but the command and machine lines (this machine's)
    out = tmp_path / "bridging.md"
    assert main(["reproduce", "bridging", "--budget", "small", "--collect", str(SMALL_RECORDS), "--report", str(out)]) == 0
    assert "181 of 181 cells finished" in capsys.readouterr().out

    def body(text):
        return [line for line in text.splitlines() if not line.startswith(INPUT_LINES)]

    assert body(out.read_text(encoding="utf-8")) == body(SMALL_REPORT.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", [SMALL_RECORDS, TINY_RECORDS])
def test_records_round_trip_through_their_typed_form(path):
    for line in path.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        rec = bridging.CellRecord.from_record(raw)
        assert rec.to_record() == raw
        assert grid.spec_hash(rec.spec.to_spec()) == raw["spec_hash"] and rec.spec.key == raw["key"]


@pytest.mark.parametrize("budget", ["tiny", "small", "medium", "full"])
def test_typed_specs_are_the_stored_specs(budget):
    typed = bridging.plan(budget)
    stored = bridging.cells(budget)
    assert [s.key for s in typed] == [c.key for c in stored]
    for spec, cell in zip(typed, stored):
        assert bridging.parse_spec(cell.spec) == spec and spec.to_spec() == cell.spec
    with pytest.raises(ValueError, match="unknown cell kind 'nope'"):
        bridging.parse_spec({"kind": "nope"})


def test_a_malformed_record_is_a_one_line_error(tmp_path, capsys):
    floor = next(c for c in bridging.cells("tiny") if c.key == bridging.FLOOR_KEY)
    bad = {"key": floor.key, "spec": floor.spec, "spec_hash": floor.spec_hash, "result": {"fid": 4.2}, "wall_s": 1.0}
    with pytest.raises(StatganError, match=r"^cell record 'mnist5k/floor': no 'fid_extractor'$"):
        bridging.CellRecord.from_record(bad)
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(bad) + "\n")
    assert main(["reproduce", "bridging", "--budget", "tiny", "--collect", str(path), "--report", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "statgan: error: cell record 'mnist5k/floor': no 'fid_extractor'"


# ---- the Reproduction protocol ----------------------------------------------------------------------
def _fake(**changes):
    """A reproduction that satisfies the protocol (module-level functions: picklable), with ``changes``."""
    budgets = {b: types.SimpleNamespace(threads=None) for b in REQUIRED_BUDGETS}
    attrs = dict(NAME="fake", BUDGETS=budgets, cells=bridging.cells, run_cell=bridging.run_cell,
                 write_report=bridging.write_report)
    attrs.update(changes)
    return types.SimpleNamespace(**{k: v for k, v in attrs.items() if v is not None})


def test_bridging_satisfies_the_protocol_and_is_registered():
    assert METHODS == {"cells": 2, "run_cell": 2, "write_report": 7}
    assert protocol_problems(bridging, "bridging") == []
    assert REPRODUCTIONS["bridging"] is bridging and REPRODUCTIONS.names() == ["bridging"]
    registry = ReproductionRegistry("reproduction")
    assert registry.register()(_fake()).NAME == "fake" and registry.names() == ["fake"]


@pytest.mark.parametrize("changes, problem", [
    ({"write_report": None}, "write_report is missing"),
    ({"NAME": None}, "has no NAME and none was given"),
    ({"NAME": 3}, "has no NAME and none was given"),
    ({"BUDGETS": {"tiny": types.SimpleNamespace(threads=None)}}, "BUDGETS has no 'small' budget; BUDGETS has no 'full'"),
    ({"BUDGETS": ["tiny", "small", "full"]}, "BUDGETS is a list, not a mapping"),
    ({"BUDGETS": {b: object() for b in REQUIRED_BUDGETS}}, "BUDGETS['tiny'] has no 'threads'"),
    ({"BUDGETS": {b: types.SimpleNamespace(threads=0) for b in REQUIRED_BUDGETS}},
     "BUDGETS['tiny'].threads is 0, not None or a positive integer"),
    ({"cells": "grid"}, "cells is a str, not callable"),
    ({"cells": lambda budget: []}, "cells does not take the 2 positional arguments of Reproduction.cells"),
    ({"run_cell": lambda spec, wd: {}}, "run_cell cannot be pickled (worker processes call it)"),
])
def test_registration_checks_the_protocol(changes, problem):
    registry = ReproductionRegistry("reproduction")
    with pytest.raises(ReproductionError) as info:
        registry.register()(_fake(**changes))
    message = str(info.value)
    assert problem in message and "\n" not in message
    if "NAME" not in changes:
        assert message.startswith("reproduction 'fake' does not satisfy the Reproduction protocol: ")
    assert registry.names() == []  # nothing half-registered


def test_registration_checks_the_registered_name():
    registry = ReproductionRegistry("reproduction")
    with pytest.raises(ReproductionError, match=r"reproduction 'other' .*: NAME is 'fake' but it is registered as 'other'"):
        registry.register("other")(_fake())
    registry.register("fake")(_fake())
    with pytest.raises(ValueError, match="registered twice"):
        registry.register()(_fake())
