"""Evaluation during training, called by the shared loop every `train.eval_every` steps (rae_xla/train/loop.py).

Stage 2, `GenerationEval`: FID of `train.eval_num_images` samples of the EMA model (balanced labels 0, 1, ...,
fixed noise of (seed, index): the same set at every evaluation) against `train.eval_reference`'s mu/sigma.
Stage 1, `ReconstructionEval`: rFID, PSNR and SSIM of EMA reconstructions of the first `train.eval_num_images`
images of `data` split `train.eval_split` (ADM center crop, no flip) against those same images.
Both shard the work over every device and host in global batches of `train.eval_batch_size` and compute the
statistics on the host as the `evaluate` job does (FID-N with N < 50k is biased upwards: compare runs only at equal
N). The Inception is built on first use, so a run without evaluation never loads it.
"""
from __future__ import annotations

import numpy as np
import torch
from absl import logging

from rae_xla import data
from rae_xla.eval import adm, evaluate, inception


def _count_label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


class GenerationEval:
    """eval(model) -> {'eval/fid_<N>': FID} for a stage-2 EMA model."""

    def __init__(self, config, runtime, *, latent_shape, alpha: float, decode):
        t = config.train
        self.config, self.runtime, self.decode = config, runtime, decode
        self.latent_shape, self.alpha = tuple(latent_shape), alpha
        self.num, self.batch = t.eval_num_images, t.eval_batch_size
        self._extractor = None
        self._reference = None

    def _extractor_and_reference(self):
        if self._extractor is None:
            t = self.config.train
            self._extractor = inception.FeatureExtractor(self.runtime, t.eval_inception_weights)
            reference = evaluate.load_reference(t.eval_reference, "train.eval_reference")
            if "mu" in reference:
                self._reference = (reference["mu"], reference["sigma"])
            else:  # An image npz: its statistics once.
                self._reference = adm.feature_statistics(
                    self._extractor.features_of_array(reference["arr_0"], self.batch)["pool3"])
        return self._extractor, self._reference

    def _host_inputs(self):
        """This process's rows of each global batch: noise of (seed, sample index), labels index mod classes."""
        from rae_xla.data import sampler

        rows = sampler.process_rows(self.runtime.process_index, self.runtime.process_count, self.batch)
        classes = self.config.model.num_classes
        for start in range(0, self.num, self.batch):
            index = np.arange(start, start + self.batch)[rows]
            noise = torch.stack([torch.randn(self.latent_shape, generator=torch.Generator().manual_seed(
                self.config.seed * 1_000_003 + 17 + int(i))) for i in index])
            yield {"noise": noise, "label": torch.from_numpy(index % classes)}

    @torch.no_grad()
    def __call__(self, model) -> dict[str, float]:
        from rae_xla import flow

        extractor, (mu_ref, sigma_ref) = self._extractor_and_reference()
        s, classes = self.config.sample, self.config.model.num_classes
        images = []
        for inputs in self.runtime.device_batches(self._host_inputs()):
            latents = flow.sample(model, inputs["noise"], inputs["label"], method=s.method, num_steps=s.num_steps,
                                  shift=self.alpha, guidance=flow.guidance_from_config(s.guidance, null_label=classes),
                                  step_fn_wrapper=None if s.method in flow.ADAPTIVE_METHODS else
                                  lambda fn: self.runtime.compile_step(fn, name="eval_sample_step"))
            # uint8 as the official sampling scripts (clamp, x255, truncate); every process gets the global batch.
            pixels = (self.decode(latents).clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1)
            images.append(self.runtime.gather_batch(pixels).numpy())
        images = np.concatenate(images)[:self.num]
        features = extractor.features_of_array(images, self.batch)
        fid = adm.frechet_distance(*adm.feature_statistics(features["pool3"]), mu_ref, sigma_ref)
        return {f"eval/fid_{_count_label(self.num)}": fid}


class ReconstructionEval:
    """eval(reconstruct) -> {'eval/rfid', 'eval/psnr', 'eval/ssim'} where reconstruct(device uint8 (b, S, S, 3)) ->
    device uint8 (b, S', S', 3) (e.g. stage1.reconstruct_uint8 with the EMA decoder)."""

    def __init__(self, config, runtime):
        t = config.train
        self.config, self.runtime = config, runtime
        self.num, self.batch = t.eval_num_images, t.eval_batch_size
        self.data_cfg = dict(config.data.to_dict(), split=t.eval_split, random_flip=False)
        self._extractor = self._pairs = self._originals = self._reference = None

    def _setup(self):
        if self._extractor is None:
            self._extractor = inception.FeatureExtractor(self.runtime, self.config.train.eval_inception_weights)
            self._pairs = evaluate.PairMetrics(self.runtime)
            first = _first_images(self.data_cfg, self.num)
            self._originals = first
            self._reference = adm.feature_statistics(self._extractor.features_of_array(first, self.batch)["pool3"])
            logging.info("in-training eval: %d images of split %r", len(first), self.data_cfg["split"])

    @torch.no_grad()
    def __call__(self, reconstruct) -> dict[str, float]:
        self._setup()
        recon = []
        batches = inception.global_batches({"image": self._originals}, self.batch, self.runtime.process_index,
                                           self.runtime.process_count)
        for batch in self.runtime.device_batches(batches):
            recon.append(self.runtime.gather_batch(reconstruct(batch["image"])).numpy())  # sync point: eval only.
        recon = np.concatenate(recon)[:len(self._originals)]
        if recon.shape != self._originals.shape:
            raise ValueError(f"reconstructions {recon.shape} differ in size from the images {self._originals.shape}")
        mu, sigma = adm.feature_statistics(self._extractor.features_of_array(recon, self.batch)["pool3"])
        out = {"eval/rfid": adm.frechet_distance(mu, sigma, *self._reference)}
        pairs = self._pairs(recon, self._originals, self.batch)
        out.update({f"eval/{k}": v for k, v in pairs.items()})
        return out


def _first_images(data_cfg: dict, count: int) -> np.ndarray:
    """The first `count` images of the split, uint8 (n, S, S, 3), on every process (read locally)."""
    loader = data.make_eval_loader(dict(data_cfg, num_workers=0), batch_size=min(count, 256), process_index=0,
                                   process_count=1)
    chunks, have = [], 0
    for batch in loader:
        images = batch["image"].numpy()[batch["valid"].numpy()][:count - have]
        chunks.append(images)
        have += len(images)
        if have >= count:
            break
    return np.concatenate(chunks)
