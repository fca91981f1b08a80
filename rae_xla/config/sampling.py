"""`config.sampling`: the sampling jobs `sample`, `sample_fid`, `reconstruct` (docs/readme/sampling.md): the
block, its ranges, its checks."""
from __future__ import annotations

from typing import Any

import ml_collections

from rae_xla.config.checks import Placement, check_path, one_of, require
from rae_xla.config.ranges import COUNT, at_least


# The label orders of the sampling jobs (sampling/labels.py implements them and imports this list): declared here,
# below the sampling package, so that the config does not import a job package.
LABEL_MODES = ("equal", "random", "official")


def sampling_block(**overrides: Any) -> ml_collections.ConfigDict:
    """The sampling jobs `sample`, `sample_fid`, `reconstruct` (docs/readme/sampling.md)."""
    block = dict(
        # Stage-2 weights: a stage2_model.pt (local or gs://), a training workdir (EMA of its newest checkpoint),
        # or '' = this job's workdir.
        checkpoint="",
        num_samples=50000,  # sample_fid: N; reconstruct: images of the split (0 = all).
        global_batch_size=256,  # Images per batch over all devices; a multiple of the device count.
        labels="equal",  # equal (exactly N/num_classes each) | random | official (sample_ddp.py's order)
        official_world_size=8,  # labels='official': the official run's GPUs ...
        official_batch=125,  # ... and --per-proc-batch-size.
        class_labels=(207, 360, 387, 974, 88, 979, 417, 279),  # `sample`: one image per entry.
        name="samples",  # Output file stem in the workdir.
        log_every=10,  # Batches between progress lines.
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


RANGES = {
    # >= 1 except for `reconstruct`, where 0 = the whole split (checked below with the job).
    "num_samples": at_least(0, note="0 = the whole split, reconstruct only"),
    "global_batch_size": COUNT,
    "official_world_size": COUNT,
    "official_batch": COUNT,
    "class_labels": at_least(0),  # Class indices; the upper end is the model's num_classes, known when it loads.
    "log_every": COUNT,
}


def validate_sampling(config: ml_collections.ConfigDict, placement: Placement) -> None:
    """Label order, sample count, the batch split, and the stage-2 (and autoguidance) weights."""
    sampling = config.sampling
    one_of(sampling.labels, LABEL_MODES, "sampling.labels")
    require(sampling.num_samples >= 1 or config.job == "reconstruct",
            f"sampling.num_samples={sampling.num_samples} must be >= 1 (reconstruct: 0 = the whole split)")
    shards = placement.batch_shards()
    require(config.job == "sample" or sampling.global_batch_size % shards == 0,
            f"sampling.global_batch_size={sampling.global_batch_size} is not divisible by the {shards} batch shards "
            f"(devices or processes); pick a multiple of {shards}")
    guidance = config.sample.guidance if "sample" in config else None
    weights = "stage2_model.pt or a training workdir"
    check_path("sampling.checkpoint", sampling.checkpoint, weights, only_suffix=".pt")
    if guidance is not None:
        check_path("sample.guidance.model_weights", guidance.model_weights, weights, only_suffix=".pt")
        require(guidance.method != "autoguidance" or guidance.scale <= 1 or bool(guidance.model_weights),
                "autoguidance needs sample.guidance.model_weights (the weak model's stage2_model.pt or workdir)")
