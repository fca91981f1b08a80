"""The TF-FID-compatible Inception (torch-fidelity's `FeatureExtractorInceptionV3`) with ADM's three feature sets.

ADM's evaluator runs the TF1 graph `classify_image_graph_def.pb` (inception-2015-12-05) on NHWC uint8-valued
images of any size: TF1 bilinear resize to 299 (align_corners=False, no half-pixel centres), (x − 128)/128, and
reads (docs/reference.md §7.7, docs/ecosystem.md §7):
  pool3           `pool_3:0` (B, 2048)                         -> FID, precision/recall
  logits_unbiased pool3 · W of the 1008-way softmax, no bias  -> Inception Score
  spatial         `mixed_6/conv:0[..., :7]` flattened NHWC     -> sFID: torch-fidelity's Mixed_6d.branch1x1 output
                  (after BN + ReLU), first 7 channels, (B, 17·17·7 = 2023)
torch-fidelity's module is an nn.Module port of the same graph (its resize and pooling patched to match TF), so it
runs on any backend; we add only the sFID hook. Always fp32 (ADM's graph is fp32; bf16 would move FID).

Weights: torch-fidelity's release file `weights-inception-2015-12-05-6726825d.pth`, from its normal download
(cached under $TORCH_HOME/hub/checkpoints, so a pre-copied file works offline) or a local path (`weights`).
"""
from __future__ import annotations

from typing import Iterable, Iterator, Mapping

import numpy as np
import torch
from absl import logging
from torch import nn

FEATURES = ("pool3", "logits_unbiased", "spatial")
SPATIAL_CHANNELS = 7  # ADM: mixed_6/conv[..., :7].
WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


class InceptionFeatures(nn.Module):
    """forward(images uint8 (B, 3, H, W), any H, W) -> {'pool3': (B, 2048), 'logits_unbiased': (B, 1008),
    'spatial': (B, 2023)}, all float32."""

    def __init__(self, weights: str = ""):
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # Deferred: heavy.

        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                               feature_extractor_weights_path=weights or None)
        self._spatial = None
        self.net.Mixed_6d.branch1x1.register_forward_hook(self._keep_spatial)

    def _keep_spatial(self, module, inputs, output):
        del module, inputs
        self._spatial = output[:, :SPATIAL_CHANNELS]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pool3, logits = self.net(images)
        spatial, self._spatial = self._spatial, None  # Drop the reference: no tensor outlives the call.
        # (B, 7, 17, 17) NCHW -> NHWC flatten, the order of ADM's TF tensor.
        return {"pool3": pool3, "logits_unbiased": logits,
                "spatial": spatial.permute(0, 2, 3, 1).reshape(spatial.shape[0], -1).float()}


def build_inception(weights: str = "") -> InceptionFeatures:
    """The network on the host, eval mode, fp32, no gradients. weights: '' = torch-fidelity's download/cache."""
    try:
        return InceptionFeatures(weights).eval().requires_grad_(False)
    except (OSError, RuntimeError) as e:  # URLError is an OSError: no network and nothing cached.
        if weights:
            raise
        raise RuntimeError(
            f"could not download torch-fidelity's Inception weights ({e}). Offline: copy {WEIGHTS_FILE} into "
            f"$TORCH_HOME/hub/checkpoints/ or set --config.eval.inception_weights=/path/{WEIGHTS_FILE}") from e


# ---------------------------------------------------------------------------------------------------------------
# Running it over a set of images on the runtime: fixed global batches sharded over every device and host.


def global_batches(arrays: Mapping[str, np.ndarray], global_batch_size: int, process_index: int,
                   process_count: int) -> Iterator[dict[str, torch.Tensor]]:
    """This process's rows of fixed-size global batches over equally long arrays (e.g. {'image': uint8
    (N, H, W, 3)}; npz members are read one batch at a time). The last batch is zero-padded; 'valid' (b,) marks
    real rows."""
    from rae_xla.data import sampler  # Deferred: the data package imports tfds.

    rows = sampler.process_rows(process_index, process_count, global_batch_size)
    n = len(next(iter(arrays.values())))
    if any(len(a) != n for a in arrays.values()):
        raise ValueError(f"arrays of different lengths: { {k: len(a) for k, a in arrays.items()} }")
    for start in range(0, n, global_batch_size):
        index = np.arange(start, start + global_batch_size)[rows]  # Contiguous: process_rows is a slice.
        lo, hi = min(int(index[0]), n), min(int(index[-1]) + 1, n)
        batch = {"valid": torch.from_numpy(index < n)}
        for name, array in arrays.items():
            rows_out = np.zeros((len(index), *array.shape[1:]), array.dtype)
            rows_out[:hi - lo] = array[lo:hi]
            batch[name] = torch.from_numpy(rows_out)
        yield batch


class FeatureExtractor:
    """The Inception on the runtime's devices: one compiled graph for a fixed global batch.

    `features(host_batches)` takes this process's slices of global batches {'image': uint8 (b, H, W, 3),
    'valid': bool (b,)} and returns {name: float32 numpy (N_valid, D)} for the whole set, in global order, on
    every process (the runtime gathers each batch's rows from every device and host).
    """

    def __init__(self, runtime, weights: str = ""):
        self.runtime = runtime
        # Replicated on every device (24M parameters): no all-gathers inside the step.
        self.network = build_inception(weights).to(runtime.device)
        self._step = runtime.compile_step(self._forward, name="inception", max_graphs=1)

    @torch.no_grad()
    def _forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.network(batch["image"].permute(0, 3, 1, 2))
        # The mask comes back as a computed output: an XLA input batch keeps its sharding annotation and cannot
        # be re-annotated (replicated) for the host copy.
        out["valid"] = batch["valid"].to(torch.int32)
        return out

    def features(self, host_batches: Iterable[Mapping[str, torch.Tensor]], *, total: int | None = None,
                 log_every: int = 50) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {name: [] for name in FEATURES}
        done = 0
        for i, batch in enumerate(self.runtime.device_batches(host_batches)):
            out = self._step(batch)
            valid = self.runtime.gather_batch(out["valid"]).numpy().astype(bool)
            for name in FEATURES:  # sync point: features are consumed on the host.
                parts[name].append(self.runtime.gather_batch(out[name]).numpy()[valid])
            done += int(valid.sum())
            if log_every and i % log_every == 0:
                logging.info("inception: %d%s images", done, f"/{total}" if total else "")
        return {name: np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
                for name, chunks in parts.items()}

    def features_of_array(self, images: np.ndarray, global_batch_size: int) -> dict[str, np.ndarray]:
        """Features of uint8 (N, H, W, 3) images (e.g. an npz's arr_0), split into fixed global batches."""
        return self.features(global_batches({"image": images}, global_batch_size, self.runtime.process_index,
                                            self.runtime.process_count), total=len(images))
