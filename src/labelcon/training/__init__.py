"""Training: the loop, GradCache and checkpoints."""

from labelcon.training.trainer import CheckpointError, Trainer, TrainingDiverged, TrainState, seed_everything

__all__ = ["CheckpointError", "Trainer", "TrainingDiverged", "TrainState", "seed_everything"]
