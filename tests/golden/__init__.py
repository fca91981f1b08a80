"""The official golden data, vendored in the repository (see README.md in this folder).

The one resolver for it: every test reads oracle files through `path()` (or the helpers below), never from a
path outside the repository, so a fresh clone anywhere runs the parity suite. A missing file is a failure
with the path in its message, never a skip: a parity test that silently does not run checks nothing.
"""
import json
import pathlib

import torch

DIR = pathlib.Path(__file__).resolve().parent
TINY = DIR / "official_tiny"
STAGE1 = DIR / "official_tiny_stage1"


def path(*parts: str) -> pathlib.Path:
    """DIR/parts..., which must exist (FileNotFoundError naming it otherwise)."""
    p = DIR.joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(f"golden file {p} is missing: tests/golden/ is part of the repository; restore it "
                                f"with `git checkout -- tests/golden`")
    return p


def manifest(folder: str = "official_tiny") -> dict:
    return json.loads(path(folder, "manifest.json").read_text())


def released_keys() -> dict:
    return json.loads(path("released_checkpoint_keys.json").read_text())


def load(name: str, folder: str = "official_tiny"):
    return torch.load(path(folder, name), weights_only=True)
