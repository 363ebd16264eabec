"""A run trained straight through and the same run cut and resumed, for bit-identical-resume tests."""

from typing import Callable, List, Tuple

from statgan import config
from statgan.train.trainer import Trainer


def straight_and_resumed(tmp_path, overrides: Callable[[str, int], List[str]], steps: int, cut: int) -> Tuple[Trainer, Trainer]:
    """``overrides(name, steps)`` builds the command-line overrides of run ``name``; returns the
    trainer of a run of ``steps`` steps and that of a run stopped at ``cut`` and resumed to ``steps``."""

    def fresh(name: str, n: int) -> Trainer:
        t = Trainer(config.load("mnist5k-dcgan", overrides(name, n)), tmp_path / name)
        t.fit()
        return t

    straight = fresh("straight", steps)
    fresh("cut", cut)
    cfg = config.load(tmp_path / "cut" / "config.yaml", [f"train.steps={steps}"])
    resumed = Trainer(cfg, tmp_path / "cut", resume=True)
    resumed.fit()
    return straight, resumed
