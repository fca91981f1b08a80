"""Paths and loaders for the official golden data (../shared/golden/official_tiny, see its README.md)."""
import json
import os

import torch

GOLDEN_DIR = os.environ.get("RAE_XLA_GOLDEN", os.path.join(os.path.dirname(__file__), "../../../shared/golden"))
TINY = os.path.join(GOLDEN_DIR, "official_tiny")


def manifest() -> dict:
    with open(os.path.join(TINY, "manifest.json")) as f:
        return json.load(f)


def released_keys() -> dict:
    with open(os.path.join(GOLDEN_DIR, "released_checkpoint_keys.json")) as f:
        return json.load(f)


def load(name: str):
    return torch.load(os.path.join(TINY, name), weights_only=True)
