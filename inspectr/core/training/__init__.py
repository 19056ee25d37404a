"""Provides training steps on one fixed batch, watched layer by layer, and the loss they minimise -> ``TrainingRun``."""
