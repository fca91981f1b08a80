"""Load the released RAE files into our models, strictly (docs/reference.md §2.4, §3.5, §1.4, §11.9).

- decoder `model.pt`: a raw `GeneralDecoder` state dict -> `load_decoder(decoder, src)`
- stage-2 `stage2_model.pt`: raw, or `{'ema': ...}` (a training checkpoint) -> `load_stage2(model, src)`
- `stat.pt`: `{'var': (C,H,W)[, 'mean': (C,H,W)]}` -> `load_stats(src)`

`src` is a local path, a `gs://` path (read through etils.epath), an `hf://` path (rae_xla/hub.py) or an
already-loaded dict. A file that does
not match the model is an error listing the missing, unexpected and wrongly shaped keys; the official
decoder loader's silent `strict=False` (a training checkpoint then leaves the decoder random) is not copied.
"""
import io
from collections.abc import Mapping

import torch
from absl import logging
from etils import epath
from torch import nn

from rae_xla import errors, hub, remote

# Wrapper prefixes that torch.compile / DDP add to every key; the official extract_decoder strips them too.
WRAPPER_PREFIXES = ("_orig_mod.", "module.")
MAX_LISTED = 12


class CheckpointMismatchError(errors.CheckpointFileError):
    """A released file does not fit the model; the message lists what differs and how to fix it.

    A `UserError` (kind 'checkpoint'): main.py reports it as one FATAL line, exit code 2.
    """


def read_checkpoint(src, what: str = "checkpoint") -> dict:
    """A dict as-is, else torch.load(weights_only=True) of a local or gs:// file, with a clear error.

    what: names the file in errors, e.g. "decoder weights (rae.decoder_weights, a released model.pt)".
    """
    if isinstance(src, Mapping):
        return dict(src)
    path = epath.Path(hub.local_file(src))
    with remote.reading(str(src), what):  # An unreachable bucket or a 403: one line naming the file.
        if not path.exists():
            raise errors.InputPathError(f"{what} {str(src)!r} does not exist; check the path (local, gs:// or hf://).")
        if path.is_dir():
            raise errors.InputPathError(f"{what} {str(src)!r} is a folder; give the .pt file inside it.")
        data = path.read_bytes()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:                                       # zip/pickle errors have many types
        # Only the exception's type: torch's text advises weights_only=False, which is not the fix here.
        raise CheckpointMismatchError(
            f"{what} {str(src)!r} is not a readable torch checkpoint (truncated, corrupt or not a torch file: "
            f"{type(err).__name__}); give the right file or re-download it.") from err
    if not isinstance(state, Mapping):
        raise CheckpointMismatchError(f"{what} {str(src)!r} holds a {type(state).__name__}, not a state dict; "
                                      "give the right file.")
    return state


def load_stage2(model: nn.Module, src) -> nn.Module:
    """Load `stage2_model.pt` (raw state dict, or a dict with an 'ema' entry, which is used) into `model`."""
    state = read_checkpoint(src, "stage-2 checkpoint (a released stage2_model.pt)")
    if "ema" in state and isinstance(state["ema"], Mapping):
        state = state["ema"]
    elif "model" in state and isinstance(state["model"], Mapping):
        raise CheckpointMismatchError(f"{_name(src)} holds 'model' but no 'ema' weights; the official loader "
                                      "refuses this too. Pass state['model'] explicitly if you want the raw weights.")
    load_strict(model, _strip_wrappers(state), what=f"stage-2 checkpoint {_name(src)}")
    return model


def load_decoder(decoder: nn.Module, src) -> nn.Module:
    """Load a released decoder `model.pt` (a raw decoder state dict) into `decoder`, strictly."""
    state = read_checkpoint(src, "decoder weights (rae.decoder_weights, a released decoder model.pt)")
    for wrapper in ("model", "ema"):
        if wrapper in state and isinstance(state[wrapper], Mapping):
            raise CheckpointMismatchError(
                f"{_name(src)} is a stage-1 training checkpoint (has {wrapper!r}), not a raw decoder state dict. "
                "Extract the decoder first: keys 'decoder.*' of state['ema'] (or ['model']) without the prefix.")
    load_strict(decoder, _strip_wrappers(state), what=f"decoder checkpoint {_name(src)}")
    return decoder


def load_stats(src) -> tuple[torch.Tensor | None, torch.Tensor]:
    """`stat.pt` -> (mean or None, var). The released DINOv2-B stats have no mean (issue #33): variance only.

    `var` is required (a stats file without it would silently mean unit variance in the official loader, which
    reads `stats.get('var')`). Other keys are ignored with a warning, as the official loader ignores them (a
    `calculate_stat.py` variant may store e.g. a sample count next to the statistics).
    """
    stats = read_checkpoint(src, "latent stats (rae.stats, a released stat.pt)")
    if "var" not in stats:
        raise CheckpointMismatchError(f"latent stats {_name(src)} must hold 'var' (and optionally 'mean'); found "
                                      f"keys {sorted(stats)}. Point rae.stats at a stat.pt written by the "
                                      "statistics job or the released files.")
    extra = sorted(set(stats) - {"mean", "var"})
    if extra:
        logging.warning("latent stats %s: ignoring keys %s (only 'mean' and 'var' are used, as in the official "
                        "loader).", _name(src), extra)
    mean = stats.get("mean")  # absent mean is the released DINOv2-B format, not a hidden default
    return (None if mean is None else mean.float()), stats["var"].float()


def load_strict(module: nn.Module, state: Mapping, what: str) -> None:
    """module.load_state_dict(state, strict=True) after a comparison that names every difference."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        lines = [f"{what} does not match {type(module).__name__} ({len(state)} keys in file, {len(expected)} in "
                 "model). Check the model preset / config against the file."]
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if items:
                listed = ", ".join(items[:MAX_LISTED]) + (f", ... (+{len(items) - MAX_LISTED})"
                                                          if len(items) > MAX_LISTED else "")
                lines.append(f"  {label} ({len(items)}): {listed}")
        raise CheckpointMismatchError("\n".join(lines))
    module.load_state_dict(state, strict=True)


def _strip_wrappers(state: Mapping) -> dict:
    out = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        out[key] = value
    return out


def _name(src) -> str:
    return "<state dict>" if isinstance(src, Mapping) else repr(str(src))
