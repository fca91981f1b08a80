"""The next step after `make quickstart`: sample, build a sample_fid npz, or reconstruct with what it trained.

  make quickstart                                                           # trains into runs/quickstart
  python -m rae_xla.main --config=configs/sample_quickstart.py:job=sample --workdir=runs/quickstart_sample
      # -> samples/samples.png (+ .npz): one sample per class of sampling.class_labels, CFG 3 as the previews
  python -m rae_xla.main --config=configs/sample_quickstart.py --workdir=runs/quickstart_fid
      # -> samples.npz: 1,000 class-balanced samples (arr_0 uint8 1000x64x64x3), e.g. for the evaluate job
  python -m rae_xla.main --config=configs/sample_quickstart.py:job=reconstruct --workdir=runs/quickstart_recon
      # -> val_recon.npz / val_reference.npz: the validation split through the trained RAE

The models are the quickstart's own: the stage-2 EMA of <run>/stage2, the decoder exported to <run>/decoder and
the latent statistics <run>/stats/stat.pt, built with the same blocks as configs/quickstart.py (its size, flow
shift and guidance). Arguments: run=DIR (default runs/quickstart), job=sample_fid|sample|reconstruct, num=N,
batch=B, guidance=cfg|none|autoguidance (autoguidance takes `sample.guidance.model_weights`: a checkpoint of the
same architecture, e.g. an earlier copy of the run's checkpoints). The tests' tiny random-weight models:
configs/sample_tiny.py.
"""
import importlib.util
import os

from rae_xla import config as config_lib


def _quickstart_module():
    """configs/quickstart.py, beside this file: the sizes and blocks the quickstart trained with."""
    spec = importlib.util.spec_from_file_location("quickstart_config",
                                                  os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                               "quickstart.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config(arg=None):
    a = config_lib.parse_arg(arg, run="runs/quickstart", job="sample_fid", num=1000, batch=16, guidance="cfg")
    quickstart = _quickstart_module()
    if a.job not in ("sample_fid", "sample", "reconstruct"):
        raise config_lib.ConfigError(f"job={a.job!r}: choose sample_fid, sample or reconstruct")
    config = quickstart.stage2_config(dict(quickstart.SIZES["demo"]), demo=True)  # part=all's stage 2
    del config.train  # A sampling job: the trainer's block does not apply.
    config.job = a.job
    config.data.update(split="validation", random_flip=False, num_workers=0)  # reconstruct's images
    run = a.run.rstrip("/")
    config.rae.update(decoder_config=f"{run}/decoder/config.json", decoder_weights=f"{run}/decoder/model.pt",
                      stats=f"{run}/stats/stat.pt")  # The trained decoder and its latent statistics.
    # The quickstart's previews use CFG 3; `none` samples without guidance.
    scale = {"cfg": config.sample.guidance.scale, "none": 1.0, "autoguidance": 1.5}
    if a.guidance not in scale:
        raise config_lib.ConfigError(f"guidance={a.guidance!r}: choose cfg, none or autoguidance")
    config.sample.guidance.update(method=a.guidance, scale=scale[a.guidance])
    config.sampling = config_lib.sampling_block(
        checkpoint=f"{run}/stage2", num_samples=a.num, global_batch_size=a.batch, labels="equal",
        class_labels=tuple(range(10)), name="val" if a.job == "reconstruct" else "samples", log_every=5)
    return config
