"""Models from the config, shared by every job (stage-1 and stage-2 training, sampling, statistics, preflight).

Each builder returns a host module in eval mode; placing and sharding it is the runtime's job. Config mistakes
found while building (a latent/model mismatch, a checkpoint of another model, files of another encoder) raise a
`UserError` with the fix. It sits below the jobs (train, sampling, eval import it; it imports none of them).
"""
from __future__ import annotations

from typing import Any

import torch
from absl import logging

from rae_xla import config as config_lib
from rae_xla import errors
from rae_xla import flow
from rae_xla.checkpoint import official
from rae_xla.models import build_stage2_model
from rae_xla.models.rae import RAE, LatentMismatchError


def build_rae(rae_cfg) -> RAE:
    """The RAE of `config.rae` (a released name, released files, or 'random-tiny'), on the host, eval mode.

    Files that do not fit together (stats or a decoder of another encoder / resolution) are one CheckpointFileError.
    """
    try:
        if rae_cfg.name:  # rae_xla/released.py; validate() made sure no field contradicts it.
            return RAE.from_pretrained(rae_cfg.name, root=rae_cfg.released_root, noise_tau=rae_cfg.noise_tau,
                                       encoder_precision=rae_cfg.encoder_precision).eval()
        return RAE.from_pretrained(
            encoder=rae_cfg.encoder_path, encoder_kind=rae_cfg.encoder, decoder_config=rae_cfg.decoder_config,
            decoder_weights=rae_cfg.decoder_weights or None, stats=rae_cfg.stats or None,
            encoder_input_size=rae_cfg.encoder_input_size, decoder_patch_size=rae_cfg.decoder_patch_size,
            noise_tau=rae_cfg.noise_tau, encoder_precision=rae_cfg.encoder_precision).eval()
    except LatentMismatchError as e:
        raise errors.CheckpointFileError(
            f"rae: {e} (rae.encoder_path={rae_cfg.encoder_path!r}, rae.encoder_input_size="
            f"{rae_cfg.encoder_input_size}, rae.decoder_config={rae_cfg.decoder_config!r}, rae.stats="
            f"{rae_cfg.stats!r}); use the stats and decoder made for this encoder and input size") from e


def model_kwargs(model_cfg) -> dict[str, Any]:
    """`config.model` without 'arch', lists for the pair-valued fields (official keyword arguments)."""
    kwargs = model_cfg.to_dict()
    kwargs.pop("arch")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}


def check_model_matches_latents(model_cfg, latent_shape: tuple[int, int, int]) -> None:
    """A model whose input is not the RAE latent is a config error, raised before anything compiles."""
    channels, height, _ = latent_shape
    if model_cfg.in_channels != channels or model_cfg.input_size != height:
        raise config_lib.ConfigError(
            f"model expects {model_cfg.in_channels}x{model_cfg.input_size}x{model_cfg.input_size} latents but the "
            f"RAE encoder produces {channels}x{height}x{height}; set --config.model.in_channels={channels} "
            f"--config.model.input_size={height} (or change rae.encoder_input_size)")


def shift_alpha(flow_cfg, latent_shape: tuple[int, int, int]) -> float:
    """The time shift α: `flow.shift` when set, else sqrt(C*H*W / flow.shift_base); one clear line when < 1."""
    if flow_cfg.shift is not None:
        return float(flow_cfg.shift)
    try:
        return float(flow.time_shift_alpha(latent_shape, flow_cfg.shift_base))
    except ValueError as e:
        raise config_lib.ConfigError(
            f"flow.shift_base={flow_cfg.shift_base} gives the {'x'.join(map(str, latent_shape))} latents a time "
            f"shift below 1 ({e}); set --config.flow.shift=1.0 (no shift) or a smaller flow.shift_base") from e


def build_model(model_cfg, *, init_from: str, train_fixed_embeddings: bool) -> torch.nn.Module:
    """The stage-2 model on the host; optionally warm-started from a released `stage2_model.pt`.

    `pos_embed` (sin-cos) and `t_embedder.W` (the Gaussian-Fourier frequencies) are created frozen; the
    official main-branch trainer unfreezes them with `requires_grad_(True)`, the XLA trainer that produced
    the released checkpoints does not. `train_fixed_embeddings` picks the main-branch behaviour.
    """
    module = build_stage2_model(model_cfg.arch, **model_kwargs(model_cfg))
    if init_from:
        try:
            official.load_stage2(module, init_from)
        except official.CheckpointMismatchError as e:  # A file of another model: one clear line.
            raise config_lib.ConfigError(f"train.init_from: {e}") from e
        logging.info("Warm start from %s.", init_from)
    if train_fixed_embeddings:
        module.requires_grad_(True)
    return module.eval()  # Label dropout is applied by the step (stage2_step.py), not by a train-mode forward.


def disc_recipe(g) -> dict | None:
    """stage1.disc_recipe as build_discriminator's recipe dict, or None (use disc_arch.recipe) when depth is 0."""
    sizes = dict(g.disc_recipe)
    return sizes if sizes["depth"] > 0 else None
