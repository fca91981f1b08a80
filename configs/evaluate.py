"""Score samples against a reference with ADM's statistics, no TensorFlow (job `evaluate`).

  # gFID etc. of 50k samples (written by the sample_fid job) against ADM's ImageNet 256 reference:
  python -m rae_xla.main --config=configs/evaluate.py --workdir=runs/eval_ditdh_xl \\
      --config.eval.samples=runs/sample_fid/samples.npz \\
      --config.eval.reference=VIRTUAL_imagenet256_labeled.npz
  # rFID / PSNR / SSIM of reconstructions against the same center-cropped val images:
  python -m rae_xla.main --config=configs/evaluate.py:mode=reconstruction --workdir=runs/eval_rae \\
      --config.eval.samples=recon.npz --config.eval.reference=imagenet256_val_images.npz

Writes <workdir>/eval.json: fid, sfid, inception_score, precision, recall (generation) or rfid, psnr, ssim
[, lpips] (reconstruction). Inception weights: torch-fidelity's download (needs network once, then cached in
$TORCH_HOME/hub/checkpoints) or --config.eval.inception_weights=/path/weights-inception-2015-12-05-6726825d.pth.
Cost: 60k Inception forwards (50k samples + 10k reference images), a few minutes on one TPU host; precision/recall
on the host ~1-2 min.
"""
import ml_collections

from rae_xla import config as config_lib


def get_config(arg=None):
    a = config_lib.parse_arg(arg, mode="generation")
    config = ml_collections.ConfigDict()
    config.job = "evaluate"
    config.seed = 0
    config.runtime = config_lib.runtime_block()
    config.eval = config_lib.eval_block(mode=a.mode)
    return config
