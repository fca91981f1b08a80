"""Job `evaluate`: score an npz of images against a reference -> eval.json. No TensorFlow.

  python -m rae_xla.main --config=configs/evaluate.py --workdir=runs/eval \\
      --config.eval.samples=samples.npz --config.eval.reference=VIRTUAL_imagenet256_labeled.npz
  python -m rae_xla.eval --samples=samples.npz --reference=VIRTUAL_imagenet256_labeled.npz   # the same, as a CLI

generation (ADM's evaluator): FID and sFID against the reference's mu/sigma and mu_s/sigma_s (computed from its
arr_0 when absent), Inception Score of the samples, precision/recall of the samples' pool3 features against the
reference arr_0's (k = 3; VIRTUAL_imagenet256_labeled.npz holds 10,000 images for this).
reconstruction (official eval/ref_iqa.py + rFID): rFID against the reference images (the same center-cropped val
images, docs/reference.md §7.4), PSNR, SSIM (and LPIPS-VGG with `eval.lpips_vgg_weights`) of samples[i] vs
reference[i].
The Inception and the pairwise metrics run on the runtime's devices; the statistics on the host (float64).
"""
from __future__ import annotations

import json
import zipfile
from typing import Any

import numpy as np
import torch
from absl import logging
from etils import epath

from rae_xla import config as config_lib
from rae_xla import errors, remote
from rae_xla.eval import adm, inception, npz_rows, recon


# Shapes of an ADM reference file's statistics: pool3 (FID, precision/recall) and the sFID spatial features.
REFERENCE_SHAPES = {"mu": (2048,), "sigma": (2048, 2048), "mu_s": (2023,), "sigma_s": (2023, 2023)}


def _open_npz_member(path: str, field: str, name: str = "arr_0") -> npz_rows.NpzRows:
    """`name` of the npz at `path` as rows; a missing, unreachable or non-npz file is one InputPathError."""
    with remote.reading(path, field):
        if not epath.Path(path).exists():
            raise errors.InputPathError(f"{field}={path!r} does not exist; give the .npz a sampling job wrote "
                                        "(sample_fid, reconstruct, reference_stats), local or gs://")
        try:
            return npz_rows.NpzRows(path, name)
        except (zipfile.BadZipFile, ValueError, OSError) as e:
            raise errors.InputPathError(f"{field}={path!r} is not a readable .npz with {name} ({e}); give an "
                                        "npz written by sample_fid, reconstruct or reference_stats") from e


def load_images(path: str, field: str = "eval.samples") -> npz_rows.NpzRows:
    """arr_0 of an npz (local or gs://), uint8 (N, H, W, 3), read row by row as batches are needed."""
    images = _open_npz_member(path, field)
    if images.dtype != np.uint8 or len(images.shape) != 4 or images.shape[-1] != 3:
        raise errors.InputPathError(f"{field}={path!r}: arr_0 must be uint8 (N, H, W, 3) images, got "
                                    f"{images.dtype} {images.shape}; give an ADM-format sample or image npz")
    return images


def load_reference(path: str, field: str = "eval.reference") -> dict[str, Any]:
    """The reference's statistics (when present, shapes checked) and its arr_0 as rows (when present)."""
    with remote.reading(path, field):
        if not epath.Path(path).exists():
            raise errors.InputPathError(f"{field}={path!r} does not exist; give an ADM reference npz (e.g. "
                                        "VIRTUAL_imagenet256_labeled.npz) or one written by reference_stats")
        try:
            with epath.Path(path).open("rb") as f:
                with np.load(f) as npz:
                    files = npz.files
                    out: dict[str, Any] = {k: npz[k] for k in adm.REFERENCE_KEYS if k in files}
        except (zipfile.BadZipFile, ValueError, OSError) as e:
            raise errors.InputPathError(f"{field}={path!r} is not a readable .npz ({e})") from e
    wrong = {k: v.shape for k, v in out.items() if tuple(v.shape) != REFERENCE_SHAPES[k]}
    if wrong or (out and len(out) != len(REFERENCE_SHAPES)):
        raise errors.InputPathError(f"{field}={path!r}: ADM statistics must be {REFERENCE_SHAPES}, got "
                                    f"{ {k: v.shape for k, v in out.items()} }; give an ADM reference npz")
    if "arr_0" in files:
        out["arr_0"] = load_images(path, field)
    if not out:
        raise errors.InputPathError(f"{field}={path!r} has neither statistics (mu, sigma, mu_s, sigma_s) nor "
                                    "images (arr_0); give an ADM reference npz")
    return out


def reference_statistics(reference: dict[str, np.ndarray], reference_features: dict[str, np.ndarray] | None):
    """(mu, sigma, mu_s, sigma_s): the file's when present (ADM's read_statistics), else from the features."""
    if "mu" in reference:
        return reference["mu"], reference["sigma"], reference["mu_s"], reference["sigma_s"]
    return (*adm.feature_statistics(reference_features["pool3"]),
            *adm.feature_statistics(reference_features["spatial"]))


def generation_metrics(sample_features: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                       reference_features: dict[str, np.ndarray] | None, *, fp16: bool) -> dict[str, float]:
    """ADM's five numbers from Inception features (see adm.py); reference_features: of the reference arr_0."""
    mu_ref, sigma_ref, mu_s_ref, sigma_s_ref = reference_statistics(reference, reference_features)
    mu, sigma = adm.feature_statistics(sample_features["pool3"])
    mu_s, sigma_s = adm.feature_statistics(sample_features["spatial"])
    out = {"fid": adm.frechet_distance(mu, sigma, mu_ref, sigma_ref),
           "sfid": adm.frechet_distance(mu_s, sigma_s, mu_s_ref, sigma_s_ref),
           "inception_score": adm.inception_score(sample_features["logits_unbiased"])}
    if reference_features is not None:
        out["precision"], out["recall"] = adm.precision_recall(reference_features["pool3"], sample_features["pool3"],
                                                               fp16=fp16)
    return out


class PairMetrics:
    """PSNR, SSIM (and LPIPS) of image pairs on the runtime's devices: one compiled graph per global batch."""

    def __init__(self, runtime, lpips_vgg_weights: str = ""):
        self.runtime = runtime
        self.lpips = recon.lpips_vgg(lpips_vgg_weights).to(runtime.device) if lpips_vgg_weights else None
        self._step = runtime.compile_step(self._forward, name="pair_metrics", max_graphs=1)

    @torch.no_grad()
    def _forward(self, batch):
        pred, target = recon.to_unit_float(batch["image"]), recon.to_unit_float(batch["reference"])
        out = {"psnr": recon.psnr(pred, target), "ssim": recon.ssim(pred, target),
               "valid": batch["valid"].to(torch.int32)}  # A computed output: see inception.FeatureExtractor.
        if self.lpips is not None:  # LPIPS takes [-1, 1] inputs, as the official eval.
            out["lpips"] = self.lpips(2 * pred - 1, 2 * target - 1).flatten()
        return out

    def __call__(self, images: np.ndarray, reference: np.ndarray, global_batch_size: int) -> dict[str, float]:
        if tuple(images.shape) != tuple(reference.shape):
            raise ValueError(f"reconstructions {images.shape} and reference images {reference.shape} must match "
                             f"one to one (the same crops in the same order)")
        values: dict[str, list[np.ndarray]] = {}
        batches = inception.global_batches({"image": images, "reference": reference}, global_batch_size,
                                           self.runtime.process_index, self.runtime.process_count)
        for batch in self.runtime.device_batches(batches):
            out = self._step(batch)
            valid = self.runtime.gather_batch(out.pop("valid")).numpy().astype(bool)
            for name, value in out.items():  # sync point: per-image values to the host.
                values.setdefault(name, []).append(self.runtime.gather_batch(value).double().numpy()[valid])
        return {name: float(np.concatenate(v).mean()) for name, v in values.items()}


def evaluate(eval_cfg, runtime) -> dict[str, Any]:
    """The metrics of `eval_cfg.samples` against `eval_cfg.reference` (see the module docstring)."""
    for field in ("samples", "reference"):
        if not eval_cfg[field]:
            raise config_lib.ConfigError(f"eval.{field} is empty; e.g. --config.eval.{field}=path/to/file.npz")
    samples = load_images(eval_cfg.samples)
    reference = load_reference(eval_cfg.reference)
    extractor = inception.FeatureExtractor(runtime, eval_cfg.inception_weights)
    logging.info("evaluate: %d samples %s vs reference %s", len(samples), samples.shape[1:], eval_cfg.reference)
    sample_features = extractor.features_of_array(samples, eval_cfg.global_batch_size)
    reference_images = reference.get("arr_0")
    reference_features = (extractor.features_of_array(reference_images, eval_cfg.global_batch_size)
                          if reference_images is not None else None)
    if reference_features is None and "mu" not in reference:
        raise ValueError(f"{eval_cfg.reference} has neither statistics (mu, sigma, ...) nor images (arr_0)")
    result: dict[str, Any] = {"mode": eval_cfg.mode, "samples": eval_cfg.samples, "reference": eval_cfg.reference,
                              "num_samples": int(len(samples)),
                              "num_reference_images": int(len(reference_images)) if reference_images is not None
                              else 0}
    if eval_cfg.mode == "generation":
        result.update(generation_metrics(sample_features, reference, reference_features,
                                         fp16=eval_cfg.precision_recall_fp16))
        result["precision_recall_fp16"] = bool(eval_cfg.precision_recall_fp16)
    else:
        if reference_images is None:
            raise ValueError(f"eval.mode='reconstruction' needs the reference images (arr_0) in {eval_cfg.reference}")
        mu_ref, sigma_ref = adm.feature_statistics(reference_features["pool3"])  # rFID vs the SAME images.
        result["rfid"] = adm.frechet_distance(*adm.feature_statistics(sample_features["pool3"]), mu_ref, sigma_ref)
        result.update(PairMetrics(runtime, eval_cfg.lpips_vgg_weights)(samples, reference_images,
                                                                       eval_cfg.global_batch_size))
    return result


def write_json(result: dict[str, Any], path: str) -> None:
    target = epath.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


def run(config, workdir: str, runtime) -> None:
    """The `evaluate` job: writes eval.json (process 0) and logs the numbers."""
    result = evaluate(config.eval, runtime)
    path = config.eval.output or str(epath.Path(workdir) / "eval.json")
    if runtime.is_main:
        write_json(result, path)
        logging.info("evaluate: %s -> %s", {k: v for k, v in result.items() if isinstance(v, float)}, path)
    runtime.barrier("evaluate_written")
