"""Sampling jobs (docs/readme/sampling.md): `sample` (a grid + latents), `sample_fid` (N samples to an ADM npz,
sharded, resumable) and `reconstruct` (stage-1 reconstructions + the reference crops, for rFID).

Pieces: labels.py (equal / random / official label orders), noise.py (noise of (seed, index)), models.py (RAE,
EMA or released weights, the autoguidance model), engine.py (compiled sampling + decode), shards.py (atomic
shards, resume, streamed npz assembly).
"""
