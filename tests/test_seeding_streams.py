"""The seed streams: every one is named in ``statgan.runtime.seeding.STREAMS``, nothing else in the
package calls ``manual_seed``, and the table's formulas are the historical expressions bit for bit
(so runs made before the table existed reproduce)."""

from __future__ import annotations

import ast
import re
import zlib
from pathlib import Path
from typing import List

import pytest
import torch

from statgan.data import load, ood, toy
from statgan.runtime.seeding import (
    KINDS, RNGS, STREAMS, derived_seed, make_rng, reseed, seed_global, seeded_generator, stream_generator,
    stream_seed,
)
from statgan.train.batches import BatchOrder

PKG = Path(__file__).resolve().parents[1] / "src" / "statgan"
SEEDING = PKG / "runtime" / "seeding.py"
MANUAL_SEED = re.compile(r"manual_seed(_all)?\s*\(")
#: the functions that take a stream name as their first (or, for reseed, second) argument
STREAM_FUNCS = {"stream_seed": 0, "stream_generator": 0, "seed_global": 0, "reseed": 1}


def _package_files() -> List[Path]:
    return sorted(f for f in PKG.rglob("*.py") if f != SEEDING)


# ---- structure ---------------------------------------------------------------------------------
def test_manual_seed_is_called_only_in_runtime_seeding():
    hits = [f"{f.relative_to(PKG.parent)}:{i}: {line.strip()}"
            for f in _package_files()
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if MANUAL_SEED.search(line)]
    assert not hits, ("seed through statgan.runtime.seeding (stream_generator / seed_global / reseed and a "
                      "named stream in STREAMS), not manual_seed:\n" + "\n".join(hits))


def _stream_names_used(path: Path) -> List[tuple]:
    """(line, name) of every literal stream name passed to a seeding function in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        pos = STREAM_FUNCS.get(fn)
        if pos is not None and len(node.args) > pos and isinstance(node.args[pos], ast.Constant):
            out.append((node.lineno, node.args[pos].value))
    return out


def test_every_stream_name_used_in_the_package_is_in_the_table():
    unknown = [f"{f.relative_to(PKG.parent)}:{line}: {name!r}"
               for f in _package_files() for line, name in _stream_names_used(f) if name not in STREAMS]
    assert not unknown, "seed streams missing from STREAMS:\n" + "\n".join(unknown)


def test_every_entry_is_well_formed():
    for name, s in STREAMS.items():
        assert s.kind in KINDS and s.rng in RNGS, name
        assert s.description and "\n" not in s.expression, name
        assert s.formula.__code__.co_argcount == len(s.inputs), name


# ---- the formulas are the old expressions ----------------------------------------------------------
OLD = [
    # (stream, inputs, the literal expression the call site used before the table)
    ("weights", (7,), 7),
    ("rank", (7, 3), derived_seed(7, "rank:3")),
    ("rank_resume", (7, 3, 120), derived_seed(7, "rank:3:step:120")),
    ("trainer_latents", (7,), 8),
    ("trainer_latents", (0,), 1),
    ("trainer_grid", (7,), 9),
    ("batch_order", (3, 5), 3 * 1_000_003 + 5),
    ("batch_order", (123456789, 0), 123456789 * 1_000_003),
    ("batch_loader", (7,), 7),
    ("regularizer", (0, "relaxation"), derived_seed(0, "relaxation")),
    ("regularizer", (7, "augment"), derived_seed(7, "augment")),
    ("mc_dropout", (7,), derived_seed(7, "mc_dropout")),
    ("sharpness_probe", (7, 40), derived_seed(7, "sharpness:40")),
    ("eval_loader", (), 0),
    ("eval_latents", (11,), 11),
    ("cli_latents", (42,), 42),
    ("generator_probe", (), 0),
    ("thread_probe", (), 0),
    ("thread_probe_masks", (), 0),
    ("toy_split", ("train",), 0),
    ("toy_split", ("test",), 1),
    ("ood_set", (7, "glyphs"), (7 * 1_000_003 + zlib.crc32(b"glyphs")) % 2**63),
    ("ood_set", (2**62, "noise"), (2**62 * 1_000_003 + zlib.crc32(b"noise")) % 2**63),
    ("derived", (7, "audit:train"), derived_seed(7, "audit:train")),
    ("audit_prior", (2**61 + 5,), 2**61 + 5),
    ("bridging_sharpness_batch", (2507_00651,), 2507_00651),
    ("bridging_sharpness_start", (2507_00651,), 2507_00652),
    ("bridging_toy_eval", (), 12345),
]


@pytest.mark.parametrize("name,inputs,old", OLD, ids=[f"{n}{i}" for n, i, _ in OLD])
def test_table_formula_equals_the_old_expression(name, inputs, old):
    assert stream_seed(name, *inputs) == old


def test_every_stream_is_checked_against_its_old_expression():
    assert set(STREAMS) == {name for name, _, _ in OLD}


def test_derived_seed_is_the_historical_hash():
    # committed values: sha256(f"statgan:{purpose}:{seed}")[:8] little-endian, top bit cleared
    assert derived_seed(0, "rank:1") == 3900554653175072332
    assert derived_seed(7, "mc_dropout") == 5318688128480296081


# ---- generators and the global RNG give the old draws -----------------------------------------------
@pytest.mark.parametrize("name,inputs,old", [o for o in OLD if STREAMS[o[0]].rng == "generator"],
                         ids=[f"{n}{i}" for n, i, _ in OLD if STREAMS[n].rng == "generator"])
def test_stream_generator_draws_what_the_old_generator_drew(name, inputs, old):
    expected = torch.randn(5, generator=torch.Generator().manual_seed(old))
    assert torch.equal(torch.randn(5, generator=stream_generator(name, *inputs)), expected)


def test_reseed_reseeds_in_place():
    g = stream_generator("regularizer", 0, "relaxation")
    assert reseed(g, "regularizer", 7, "relaxation") is g
    assert torch.equal(torch.randn(4, generator=g),
                       torch.randn(4, generator=torch.Generator().manual_seed(derived_seed(7, "relaxation"))))


def test_seed_global_seeds_the_global_rng_as_manual_seed_did():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(7, "mc_dropout"))
        expected = torch.randn(5)
        seed_global("mc_dropout", 7)
        assert torch.equal(torch.randn(5), expected)


def test_seeded_generator_and_make_rng_are_unchanged():
    old = torch.Generator().manual_seed(derived_seed(3, "audit:test"))
    assert torch.equal(torch.randn(4, generator=seeded_generator(3, "audit:test")), torch.randn(4, generator=old))
    assert torch.equal(torch.randn(4, generator=make_rng(9)), torch.randn(4, generator=torch.Generator().manual_seed(9)))
    g = torch.Generator()
    assert make_rng(g) is g


def test_package_call_sites_give_the_old_streams():
    old_ood = torch.Generator().manual_seed((5 * 1_000_003 + zlib.crc32(b"glyphs")) % 2**63)
    assert torch.equal(ood._rng(5, "glyphs").get_state(), old_ood.get_state())
    assert torch.equal(BatchOrder(10, 2, 3)._permutation(4), torch.randperm(10, generator=torch.Generator().manual_seed(3 * 1_000_003 + 4)))
    assert torch.equal(load("8gaussians", "test", n=5),
                       toy.get_density("8gaussians").sample(5, generator=torch.Generator().manual_seed(1)))


# ---- errors ------------------------------------------------------------------------------------
def test_an_unknown_stream_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown seed stream 'trainer_latent'.*trainer_latents"):
        stream_seed("trainer_latent", 7)
    with pytest.raises(ValueError, match="unknown seed stream"):
        stream_generator("nope")


def test_wrong_inputs_and_wrong_rng_are_clear_errors():
    with pytest.raises(TypeError, match=r"'batch_order' takes \(seed, epoch\)"):
        stream_seed("batch_order", 3)
    with pytest.raises(ValueError, match="global RNG; use seed_global"):
        stream_generator("weights", 0)
    with pytest.raises(ValueError, match="private generator; use stream_generator"):
        seed_global("trainer_latents", 0)
    with pytest.raises(ValueError, match="no seed for split 'valid'"):
        stream_seed("toy_split", "valid")

