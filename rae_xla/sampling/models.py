"""The networks a sampling job needs, from the config: RAE, the stage-2 model (EMA weights) and the optional
autoguidance model, placed on the runtime's devices in eval mode.

Stage-2 weights (`sampling.checkpoint`, and `sample.guidance.model_weights` for the weak model) come from:
  - a file (`*.pt`, local or gs://): a released `stage2_model.pt` (raw, or with an 'ema' entry), strictly loaded
    through rae_xla/checkpoint/official.py;
  - a directory (a training workdir, or its `checkpoints/` folder): the EMA of the newest complete checkpoint,
    restored through rae_xla/checkpoint/manager.py (resharded to this mesh);
  - '' (main model only): the job's own workdir, as a directory.
"""
from __future__ import annotations

import dataclasses

import torch
from absl import logging
from etils import epath

from rae_xla import config as config_lib
from rae_xla import flow
from rae_xla.checkpoint import official
from rae_xla.checkpoint.manager import CheckpointManager
from rae_xla.models.rae import RAE
from rae_xla import build


@dataclasses.dataclass
class SamplingModels:
    rae: RAE
    model: torch.nn.Module
    weak_model: torch.nn.Module | None
    latent_shape: tuple[int, int, int]
    alpha: float
    num_classes: int


def weak_model_block(config):
    """The autoguidance model's config: `config.guidance_model` when the config has one, else the preset
    `sample.guidance.model_preset` at the main model's latent size, channels and classes."""
    if "guidance_model" in config:
        return config.guidance_model
    m = config.model
    return config_lib.model_block(config.sample.guidance.model_preset, input_size=m.input_size,
                                  in_channels=m.in_channels, num_classes=m.num_classes)


def load_stage2_weights(module: torch.nn.Module, source: str, runtime, *, what: str) -> torch.nn.Module:
    """Loads `source` (see the module docstring) into `module`; returns the placed, eval-mode module."""
    path = epath.Path(source)
    if path.suffix == ".pt" or (path.exists() and not path.is_dir()):
        try:
            official.load_stage2(module, source)
        except (official.CheckpointMismatchError, FileNotFoundError) as e:
            raise config_lib.ConfigError(f"{what}: {e}") from e
        logging.info("%s: loaded %s.", what, source)
        return runtime.place_frozen(module.eval())
    directory = path / "checkpoints" if (path / "checkpoints").exists() else path
    manager = CheckpointManager(str(directory), runtime, keep=1)
    step = manager.latest_step()
    if step is None:
        raise config_lib.ConfigError(
            f"{what}: no complete checkpoint in {directory}; give a training workdir with checkpoints/, or a "
            f"stage2_model.pt file")
    placed = runtime.place_frozen(module.eval(), like_trainable=True)
    manager.restore(step, {"ema": placed})  # Only the EMA weights are read from the checkpoint.
    logging.info("%s: EMA weights of %s (step %d).", what, directory, step)
    return placed


def load_sampling_models(config, workdir: str, runtime) -> SamplingModels:
    """RAE + main model (+ weak model for autoguidance) from `config`, on the runtime's devices."""
    torch.manual_seed(config.seed)  # Same (unused) initial weights everywhere before loading.
    rae = build.build_rae(config.rae)
    latent_shape = tuple(rae.latent_shape)
    build.check_model_matches_latents(config.model, latent_shape)
    alpha = build.shift_alpha(config.flow, latent_shape)
    module = build.build_model(config.model, init_from="", train_fixed_embeddings=False)
    model = load_stage2_weights(module, config.sampling.checkpoint or workdir, runtime, what="sampling.checkpoint")
    weak = None
    g = config.sample.guidance
    if g.method == "autoguidance" and g.scale > 1.0:
        block = weak_model_block(config)
        build.check_model_matches_latents(block, latent_shape)
        weak = load_stage2_weights(build.build_model(block, init_from="", train_fixed_embeddings=False),
                                   g.model_weights, runtime, what="sample.guidance.model_weights")
    return SamplingModels(rae=runtime.place_frozen(rae.eval()), model=model, weak_model=weak,
                          latent_shape=latent_shape, alpha=float(alpha), num_classes=config.model.num_classes)
