"""The loader's spawned workers next to an initialised torch_xla (PJRT CPU) parent, in a subprocess."""
import json
import os
import subprocess
import sys

import pytest

import rae_xla.data as data

pytestmark = pytest.mark.xla

_SCRIPT = os.path.join(os.path.dirname(__file__), 'xla_loader_script.py')
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_workers_start_after_torch_xla_init(tmp_path):
    env = dict(os.environ, PJRT_DEVICE='CPU', CPU_NUM_DEVICES='4', PYTHONPATH=_REPO)
    run = subprocess.run([sys.executable, _SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    lines = [l for l in run.stdout.splitlines() if l.startswith('RESULT ')]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-5000:]
    result = json.loads(lines[0][len('RESULT '):])
    assert result['start_method'] == 'spawn'
    cfg = dict(source='synthetic', name='shapes', data_dir=str(tmp_path), split='train', image_size=16,
               random_flip=True, num_workers=0, prefetch_factor=2, synthetic_num_classes=4, synthetic_num_images=40)
    it = data.make_train_loader(cfg, global_batch_size=8, process_index=0, process_count=1, seed=3, start_step=2)
    for step, device_sum, host_sum in result['sums']:
        batch = next(it)
        assert step == batch['step'] and device_sum == host_sum == int(batch['image'].long().sum())
