"""A minimal statgan plugin: what a user's own package declares to reach every statgan command.

Its ``*.dist-info/entry_points.txt`` (beside this folder) is what ``pip install`` writes for a
package whose pyproject.toml says::

    [project.entry-points."statgan.datasets"]
    demo-digits = "statgan_demo_plugin:small_digits"
    [project.entry-points."statgan.nets"]
    demo-mlp = "statgan_demo_plugin.nets"          # a module: importing it registers G and D
    [project.entry-points."statgan.objectives"]
    demo-ns = "statgan_demo_plugin:DemoNS"
    [project.entry-points."statgan.regularizers"]
    demo-r1 = "statgan_demo_plugin:DemoR1"

tests/test_plugins.py puts this folder on PYTHONPATH, which is all an installed package amounts to.
"""

from __future__ import annotations

from typing import Optional

import torch

from statgan import data
from statgan.objectives.ratio import NonSaturating
from statgan.regularizers.gradient import R1Penalty


def small_digits(split: str = "train", root: Optional[str] = None, n: int = 256) -> torch.Tensor:
    """The first ``n`` images of mnist5k's ``split``, (n, 1, 28, 28) in [-1, 1]."""
    return data.load("mnist5k", split)[:n]


class DemoNS(NonSaturating):
    """The non-saturating loss under a plugin's name."""

    name = "demo-ns"


class DemoR1(R1Penalty):
    """R1 under a plugin's name."""

    name = "demo-r1"
