"""Training: the loop, its state, batch order, logging, precision and faults."""

from .trainer import Trainer, TrainResult, TrainingDiverged, TrainingInterrupted, default_run_name

__all__ = ["Trainer", "TrainResult", "TrainingDiverged", "TrainingInterrupted", "default_run_name"]
