"""Evaluation: ADM statistics (adm), the Inception network (inception), reconstruction metrics (recon), the
`evaluate` / `reference_stats` jobs and latent statistics (`stats` job). `python -m rae_xla.eval --help`."""
