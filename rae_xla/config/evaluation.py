"""`config.eval`: FID / sFID / IS / precision / recall and reconstruction metrics (jobs `evaluate`,
`reference_stats`): the block, its ranges, its checks. (Named evaluation.py: `eval` is a builtin.)

MODES is declared here, below the job that implements it (eval/evaluate.py imports the config).
"""
from __future__ import annotations

from typing import Any

import ml_collections

from rae_xla.config.checks import Placement, check_path, one_of
from rae_xla.config.ranges import COUNT, at_least

MODES = ("generation", "reconstruction")


def eval_block(**overrides: Any) -> ml_collections.ConfigDict:
    """FID / sFID / IS / precision / recall and reconstruction metrics (jobs `evaluate`, `reference_stats`)."""
    block = dict(
        samples="",  # npz with arr_0 uint8 (N, H, W, 3): generated samples or reconstructions (local or gs://).
        # ADM reference npz (mu, sigma, mu_s, sigma_s, arr_0; e.g. VIRTUAL_imagenet256_labeled.npz) or an npz of
        # images (arr_0 only: statistics computed here).
        reference="",
        # generation: FID, sFID, IS, precision, recall. reconstruction: rFID against the reference images plus
        # PSNR, SSIM (and LPIPS) of samples[i] vs reference arr_0[i] (the same val crops in the same order).
        mode="generation",
        inception_weights="",  # torch-fidelity weights file; '' = its download (cached in $TORCH_HOME).
        global_batch_size=200,  # Inception batch over all devices (a multiple of the device count).
        precision_recall_fp16=True,  # ADM's default fp16 distances; False = fp32.
        lpips_vgg_weights="",  # torchvision vgg16-397923af.pth: adds LPIPS to reconstruction metrics.
        output="",  # eval.json path; '' = <workdir>/eval.json.
        # reference_stats job: images of the split stored as arr_0 (ADM's reference has 10,000; -1 = all, which
        # is also the image npz for rFID/PSNR/SSIM), and the output npz ('' = <workdir>/reference.npz).
        reference_images=10000,
        reference_output="",
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


RANGES = {
    "global_batch_size": COUNT,
    "reference_images": at_least(1, special=(-1,), note="-1 = the whole split"),
}


def validate_eval(config: ml_collections.ConfigDict, placement: Placement) -> None:
    one_of(config.eval.mode, MODES, "eval.mode")
    placement.check_eval_batch(config.eval.global_batch_size, "eval.global_batch_size")
    for field in ("inception_weights", "lpips_vgg_weights"):
        check_path(f"eval.{field}", config.eval[field], "file, or ''")
