"""Training: the loop, GradCache and checkpoints."""

from labelcon.training.trainer import Trainer, TrainState, seed_everything

__all__ = ["Trainer", "TrainState", "seed_everything"]
