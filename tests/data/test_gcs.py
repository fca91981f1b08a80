"""gs:// end to end on a local GCS emulator: the build CLI uploads, the real reader path reads back.

Metadata goes through etils/gcsfs, records through ArrayRecord's C++ GCS client
(CLOUD_STORAGE_EMULATOR_ENDPOINT). Runs in a subprocess so gcsfs/etils state never leaks into other tests.
"""
import hashlib
import json
import os
import subprocess
import sys

import rae_xla.data as data
from rae_xla.data import build

_SCRIPT = os.path.join(os.path.dirname(__file__), 'gcs_read_script.py')
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_build_to_gcs_and_read_back_matches_local(gcs_emulator, image_folder, tmp_path):
    endpoint, bucket = gcs_emulator
    env = dict(os.environ, STORAGE_EMULATOR_HOST=endpoint, CLOUD_STORAGE_EMULATOR_ENDPOINT=endpoint,
               GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT='false', PYTHONPATH=_REPO)
    run = subprocess.run([sys.executable, _SCRIPT, image_folder, f'gs://{bucket}/tfds'], env=env, capture_output=True,
                         text=True, timeout=600, check=False)
    lines = [l for l in run.stdout.splitlines() if l.startswith('RESULT ')]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-5000:]
    remote = json.loads(lines[0][len('RESULT '):])

    build.build_from_image_folder(image_folder, str(tmp_path), 'tiny_gcs', 'train')
    cfg = dict(source='tfds', name='tiny_gcs', data_dir=str(tmp_path), split='train', image_size=16, random_flip=True,
               num_workers=0, prefetch_factor=2, synthetic_num_classes=1, synthetic_num_images=1)
    source = data.open_source(cfg)
    local = {r[2]: [hashlib.sha256(r[0]).hexdigest(), r[1], r[3]] for r in source.read_encoded(list(range(len(source))))}
    assert remote['records'] == local and len(local) == 7 and remote['num_classes'] == 3
    batch = next(data.make_train_loader(cfg, global_batch_size=4, process_index=0, process_count=1, seed=1,
                                        start_step=0))
    assert remote['batch_labels'] == batch['label'].tolist() and remote['batch_sum'] == int(batch['image'].sum())
