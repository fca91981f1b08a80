"""Data: sources (tfds ArrayRecord, image folder, embedded synthetic), ADM transforms, deterministic loaders.

Public API:
  validate_data_config(config.data)      cheap checks, one clear ValueError naming the field
  open_source(config.data) -> Source     len(), .num_classes, [i] -> (uint8 HWC ndarray, int)
  make_train_loader(config.data, *, global_batch_size, process_index, process_count, seed, start_step)
  make_eval_loader(config.data, *, batch_size, process_index, process_count)
Command: python -m rae_xla.data.build --image_folder=DIR --data_dir=DIR_OR_GS --name=NAME [--split=train]
"""
from rae_xla.data.dataset import open_source
from rae_xla.data.loader import make_eval_loader
from rae_xla.data.loader import make_train_loader
from rae_xla.data.validation import validate_data_config

__all__ = ['open_source', 'make_train_loader', 'make_eval_loader', 'validate_data_config']
