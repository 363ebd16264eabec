"""Training: the loop, checkpoints, batch order and logging."""

from .trainer import Trainer, TrainResult, TrainingInterrupted, load_generator, select_device

__all__ = ["Trainer", "TrainResult", "TrainingInterrupted", "load_generator", "select_device"]
