"""Weights & Biases as one more `MetricWriter` (optional: `pip install -e '.[wandb]'`).

Enabled by `config.wandb.enabled` (see rae_xla.config.wandb_block); process 0 only, like every file writer.
A restarted run (preemption, resume) continues the same W&B run: its id is stored in `workdir/wandb_run_id`
on the first start and read back afterwards. `mode='offline'` (or `WANDB_MODE=offline`) writes the run under
`workdir/wandb/` without network; `wandb sync workdir/wandb/offline-run-*` uploads it later.
"""
from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from etils import epath

from rae_xla.metrics.writers import MetricWriter, as_uint8_images, flatten_hparams, scalar_to_python

RUN_ID_FILE = "wandb_run_id"


class WandbWriter(MetricWriter):
    """Scalars, images (a batch becomes one row of pictures), texts and the config, to one W&B run."""

    def __init__(self, workdir: str, *, project: str, entity: str = "", name: str = "", tags=(), mode: str = "online",
                 config: Mapping[str, Any] | None = None, local_dir: str | None = None):
        """Starts (or resumes) the run of `workdir`.

        local_dir: where W&B keeps its files; default `workdir` when it is a local path, else the current
          directory (W&B cannot write into gs://).
        """
        try:
            import wandb
        except ImportError as e:
            raise ImportError("config.wandb.enabled=True needs the wandb package: pip install -e '.[wandb]'") from e
        self._wandb = wandb
        run_id_file = epath.Path(workdir) / RUN_ID_FILE
        run_id = run_id_file.read_text().strip() if run_id_file.exists() else secrets.token_hex(6)  # W&B ids: [a-z0-9]
        if local_dir is None:
            local_dir = "." if "://" in str(workdir) else str(workdir)
        epath.Path(local_dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(project=project, entity=entity or None, name=name or None, tags=list(tags) or None,
                               mode=mode, id=run_id, resume="allow", dir=local_dir,
                               config=flatten_hparams(config) if config is not None else None)
        if not run_id_file.exists():
            run_id_file.write_text(run_id)

    @property
    def run_id(self) -> str:
        return self._run.id

    def write_scalars(self, step, scalars):
        self._run.log({k: scalar_to_python(k, v) for k, v in scalars.items()}, step=step)

    def write_images(self, step, images):
        logged = {}
        for key, value in images.items():
            batch = as_uint8_images(key, value)
            row = batch.transpose(1, 0, 2, 3).reshape(batch.shape[1], -1, batch.shape[3])  # N pictures side by side
            logged[key] = self._wandb.Image(row)
        self._run.log(logged, step=step)

    def write_texts(self, step, texts):
        self._run.log({k: self._wandb.Html(f"<pre>{v}</pre>") for k, v in texts.items()}, step=step)

    def write_hparams(self, hparams):
        self._run.config.update(flatten_hparams(hparams), allow_val_change=True)

    def close(self):
        self._run.finish()
