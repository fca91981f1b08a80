"""`python -m rae_xla.eval --samples=S.npz --reference=R.npz [--mode=reconstruction] [--out=eval.json]`.

The `evaluate` job as a small command line tool (argparse: rae_xla/main.py is the only module with absl flags).
Prints the metrics as JSON and writes them to --out (default eval.json beside the samples).
"""
import argparse
import json
import os
import sys

from absl import logging

from rae_xla import config as config_lib
from rae_xla.eval import evaluate
from rae_xla.runtime import make_runtime


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m rae_xla.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", required=True, help="npz with arr_0 uint8 (N, H, W, 3)")
    parser.add_argument("--reference", required=True, help="ADM reference npz or an npz of images (arr_0)")
    parser.add_argument("--mode", default="generation", choices=("generation", "reconstruction"))
    parser.add_argument("--out", default="", help="eval.json path (default: beside the samples)")
    parser.add_argument("--inception_weights", default="", help="torch-fidelity Inception weights file")
    parser.add_argument("--lpips_vgg_weights", default="", help="torchvision vgg16-397923af.pth (reconstruction)")
    parser.add_argument("--batch_size", type=int, default=200, help="global Inception batch")
    parser.add_argument("--fp32_distances", action="store_true", help="precision/recall in fp32 (ADM: fp16)")
    parser.add_argument("--backend", default="auto", choices=config_lib.BACKENDS)
    return parser.parse_args(argv)


def main(argv) -> int:
    args = parse(argv)
    logging.set_verbosity(logging.INFO)
    config = config_lib.ml_collections.ConfigDict(dict(
        job="evaluate", seed=0, runtime=config_lib.runtime_block(backend=args.backend),
        eval=config_lib.eval_block(samples=args.samples, reference=args.reference, mode=args.mode,
                                   inception_weights=args.inception_weights,
                                   lpips_vgg_weights=args.lpips_vgg_weights, global_batch_size=args.batch_size,
                                   precision_recall_fp16=not args.fp32_distances)))
    try:
        config_lib.validate(config)
        runtime = make_runtime(config.runtime)
        config_lib.validate(config, num_devices=runtime.num_devices, process_count=runtime.process_count)
    except config_lib.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        result = evaluate.evaluate(config.eval, runtime)
    finally:
        runtime.close()
    out = args.out or os.path.splitext(args.samples)[0] + "_eval.json"
    if runtime.is_main:
        evaluate.write_json(result, out)
        print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
