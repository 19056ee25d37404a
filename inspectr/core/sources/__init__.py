"""Provides where a model comes from: registry names, files and packages, Hugging Face, timm, archives, checkpoints, quantized models and the build guard, each giving a ``LoadedModel``."""
