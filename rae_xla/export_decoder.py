"""Export a stage-1 run's decoder in the released format (docs/reference.md §2.4, §7.6).

  python -m rae_xla.export_decoder --workdir=runs/decoder_xl --out=exported/decoder_xl [--weights=ema|decoder]
      [--step=N] [--dtype=fp32|bf16|fp16]

Writes `<out>/model.pt` (a raw ViT-MAE-style decoder state dict: `decoder_embed.*`, `decoder_layers.{i}.*`, ...,
loadable by the official `RAE(pretrained_decoder_path=...)` and by `rae_xla.checkpoint.official.load_decoder`)
and `<out>/config.json` (the released configs/decoder/*/config.json fields). Like the official
`extract_decoder.py --use-ema`, the EMA weights are the default. The decoder's size is read from the checkpoint
(no encoder download needed); `--workdir` and `--out` may be gs:// paths.
"""
from __future__ import annotations

import argparse
import io
import json
import sys

import torch
import torch.distributed.checkpoint as dcp
from etils import epath

from rae_xla.checkpoint.manager import CheckpointManager
from rae_xla.models.vit_decoder import DECODER_PRESETS, ViTDecoder, read_decoder_config
from rae_xla.runtime import dcp_storage

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def decoder_geometry(config: dict) -> dict:
    """ViTDecoder size kwargs (hidden_size, num_layers, num_heads, intermediate_size, ...) of config['rae']."""
    name = config["rae"]["decoder_config"]
    return dict(DECODER_PRESETS[name]) if name in DECODER_PRESETS else read_decoder_config(name)


def load_trained_decoder(workdir: str, *, weights: str = "ema", step: int | None = None) -> tuple[ViTDecoder, dict]:
    """(decoder with the checkpoint's `weights` entry loaded, the run's config dict) from a stage-1 workdir."""
    root = epath.Path(workdir)
    config = json.loads((root / "config.json").read_text())
    if config.get("job") != "train_stage1":
        raise ValueError(f"{workdir} is a {config.get('job')!r} run; export_decoder needs a train_stage1 workdir.")
    manager = CheckpointManager(str(root / "checkpoints"), runtime=None, keep=1)
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"{root / 'checkpoints'} holds no complete checkpoint; train first (or wait for "
                                "the first checkpoint_every steps).")
    path = str(root / "checkpoints" / str(step))
    metadata = dcp_storage.reader_for(path).read_metadata().state_dict_metadata
    embed, pos = metadata[f"{weights}.decoder_embed.weight"].size, metadata[f"{weights}.decoder_pos_embed"].size
    decoder = ViTDecoder(**decoder_geometry(config), in_channels=embed[1], num_patches=pos[1] - 1,
                         patch_size=config["rae"]["decoder_patch_size"])
    state = {weights: decoder.state_dict()}
    dcp.load(state, storage_reader=dcp_storage.reader_for(path))  # Fills the tensors of `decoder` in place.
    decoder.load_state_dict(state[weights])
    return decoder.eval(), config


def released_config(decoder: ViTDecoder, geometry: dict, image_size: int) -> dict:
    """The released config.json fields (hidden_size / patch_size / image_size are overwritten by the RAE)."""
    return {
        "model_type": "vit_mae", "decoder_hidden_size": geometry["hidden_size"],
        "decoder_num_hidden_layers": geometry["num_layers"], "decoder_num_attention_heads": geometry["num_heads"],
        "decoder_intermediate_size": geometry["intermediate_size"], "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "layer_norm_eps": geometry.get("layer_norm_eps", 1e-12), "qkv_bias": geometry.get("qkv_bias", True),
        "num_channels": decoder.num_channels, "hidden_size": decoder.decoder_embed.in_features,
        "patch_size": decoder.patch_size, "image_size": image_size,
    }


def export(workdir: str, out: str, *, weights: str = "ema", step: int | None = None, dtype: str = "fp32") -> str:
    """Writes <out>/model.pt and <out>/config.json; returns the model.pt path."""
    decoder, config = load_trained_decoder(workdir, weights=weights, step=step)
    state = {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in decoder.state_dict().items()}
    out_dir = epath.Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    (out_dir / "model.pt").write_bytes(buffer.getvalue())
    side = int(round(decoder.num_patches ** 0.5)) * decoder.patch_size
    cfg = released_config(decoder, decoder_geometry(config), side)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    return str(out_dir / "model.pt")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m rae_xla.export_decoder", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="the train_stage1 run's workdir (local or gs://)")
    parser.add_argument("--out", required=True, help="folder for model.pt and config.json (local or gs://)")
    parser.add_argument("--weights", default="ema", choices=("ema", "decoder"), help="EMA (default) or live weights")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest complete one)")
    parser.add_argument("--dtype", default="fp32", choices=tuple(DTYPES))
    args = parser.parse_args(argv)
    try:
        path = export(args.workdir, args.out, weights=args.weights, step=args.step, dtype=args.dtype)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"FATAL export error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"Wrote {path} and config.json ({args.weights} weights).")


if __name__ == "__main__":
    main(sys.argv[1:])
