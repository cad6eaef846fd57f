"""Training: the loop, its schedule, GradCache and checkpoints."""

from labelcon.training.checkpoint import CheckpointError, TrainState
from labelcon.training.trainer import Trainer, TrainingDiverged, seed_everything

__all__ = ["CheckpointError", "Trainer", "TrainingDiverged", "TrainState", "seed_everything"]
