"""Every file, folder and dataset a job will read, and its workdir, checked before the job starts.

Metadata only (remote.probe): a local stat, a GCS lookup, an HF cache lookup or HEAD request; no weights are
read. Each problem is one UserError naming the config field, the path, what is wrong and the fix; all of them
are collected, so a user fixes every input in one round instead of one per pod start.
"""
from __future__ import annotations

import os
import uuid

from rae_xla import errors, hub, remote
from rae_xla.config import PLACEHOLDER
from rae_xla.eval.inception import WEIGHTS_FILE as INCEPTION_FILE
from rae_xla.losses.lpips import VGG16_URL, torchvision_cache_path



def _torch_hub_file(name: str) -> str:
    """torch-fidelity's Inception weights, when no path is configured, are read from the torch hub cache
    ($TORCH_HOME/hub/checkpoints); LPIPS's VGG16 likewise (lpips.torchvision_cache_path)."""
    import torch
    return os.path.join(torch.hub.get_dir(), "checkpoints", name)


class Checks:
    """Accumulates (field, path) checks; `problems` holds one UserError per failed input."""

    def __init__(self):
        self.checked: list[str] = []
        self.problems: list[errors.UserError] = []
        self.notes: list[str] = []

    def path(self, field: str, path: str, *, folder: bool = False, what: str = "") -> None:
        self.checked.append(field)
        if PLACEHOLDER in path:
            return  # validate() already names it (the placeholder bucket), once.
        why = remote.probe(path, folder=folder)
        if why:
            kind = "folder" if folder else "file"
            fix = what or f"Give an existing {kind} (local, gs:// or hf://)"
            self.problems.append(errors.InputPathError(f"{field}={path!r}: {why}. {fix}."))

    def required(self, field: str, value: str, example: str) -> bool:
        if value:
            return True
        self.problems.append(errors.InputPathError(f"{field} is empty; this job reads it: set "
                                                   f"--config.{field}={example}"))
        return False


def _encoder(checks: Checks, rae_cfg) -> None:
    path = rae_cfg.encoder_path
    if path == "random-tiny":
        return
    if not (hub.is_hub_path(path) or path.startswith("gs://") or os.path.exists(os.path.expanduser(path))):
        path = f"hf://{path}"  # A plain hub id: transformers reads it through the HF cache.
    checks.path("rae.encoder_path", path, folder=True, what="Give a local or gs:// HF model folder, an hf:// folder, "
                "or a hub id whose files are cached")


def _stage2_weights(checks: Checks, field: str, path: str) -> None:
    """A stage2_model.pt file, or a training workdir whose newest checkpoint's EMA is used."""
    if path.endswith(".pt"):
        checks.path(field, path)
    elif path:
        checks.path(f"{field} (a training workdir)", path.rstrip("/") + "/checkpoints", folder=True,
                    what="Give a stage2_model.pt or a training workdir that has checkpoints/")


def _data(checks: Checks, data_cfg) -> None:
    from rae_xla import data
    checks.checked.append("data")
    if data_cfg.source == "synthetic" or PLACEHOLDER in data_cfg.data_dir:
        return  # Built on first use.
    try:
        with remote.reading(data_cfg.data_dir, "data.data_dir"):
            data.validate_data_config(data_cfg)
    except errors.UserError as e:
        checks.problems.append(e)
    except ValueError as e:
        checks.problems.append(errors.InputPathError(str(e)))


def _workdir(checks: Checks, workdir: str) -> None:
    """The workdir can be created and written: a probe file is written and removed."""
    from etils import epath
    checks.checked.append("workdir")
    try:
        with remote.reading(workdir, "--workdir"):
            path = epath.Path(workdir)
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".preflight-{uuid.uuid4().hex[:8]}"
            probe.write_text("")
            probe.unlink()
    except errors.UserError as e:
        checks.problems.append(e)
    except OSError as e:
        checks.problems.append(errors.WorkdirError(f"cannot create or write --workdir={workdir} "
                                                   f"({type(e).__name__}: {e}); give a folder you can write to"))


def check(config, workdir: str) -> Checks:
    """All inputs of `config`'s job plus the workdir; never raises for a bad input."""
    checks = Checks()
    if "data" in config:
        _data(checks, config.data)
    if "rae" in config:
        r = config.rae
        _encoder(checks, r)
        if r.decoder_config not in ("ViT-B", "ViT-L", "ViT-XL"):
            checks.path("rae.decoder_config", r.decoder_config, folder=not r.decoder_config.endswith(".json"))
        for field in ("decoder_weights", "stats"):
            if r[field]:
                checks.path(f"rae.{field}", r[field])
    if "train" in config:
        t = config.train
        if t.init_from:
            checks.path("train.init_from", t.init_from)
        if t.eval_every and t.eval_reference:
            checks.path("train.eval_reference", t.eval_reference)
    if "sampling" in config and config.job in ("sample", "sample_fid"):
        _stage2_weights(checks, "sampling.checkpoint", config.sampling.checkpoint)
    if "sample" in config and config.sample.guidance.method == "autoguidance" and config.job in ("sample", "sample_fid"):
        _stage2_weights(checks, "sample.guidance.model_weights", config.sample.guidance.model_weights)
    if "stage1" in config:
        g = config.stage1
        if g.disc_arch.dino_ckpt_path != "random":
            checks.path("stage1.disc_arch.dino_ckpt_path", g.disc_arch.dino_ckpt_path)
        if g.perceptual_weight > 0 and not g.lpips_random_backbone:
            vgg = g.lpips_vgg_path or torchvision_cache_path()
            checks.path("stage1.lpips_vgg_path" if g.lpips_vgg_path else "stage1.lpips_vgg_path (torchvision cache)",
                        vgg, what=f"Download {VGG16_URL} there, or set "
                                  "--config.stage1.lpips_vgg_path")
    if config.job == "evaluate":
        e = config.eval
        for field in ("samples", "reference"):
            if checks.required(f"eval.{field}", e[field], "/path/to/file.npz"):
                checks.path(f"eval.{field}", e[field])
        if e.inception_weights:
            checks.path("eval.inception_weights", e.inception_weights)
        elif not os.path.isfile(_torch_hub_file(INCEPTION_FILE)):
            checks.notes.append(f"Inception weights are not cached ({_torch_hub_file(INCEPTION_FILE)}): the job "
                                "downloads them (network needed once) unless --config.eval.inception_weights is set")
    _workdir(checks, workdir)
    return checks
