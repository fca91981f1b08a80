"""Run by test_gcs.py in a fresh process: build to gs:// with the CLI, read it back, print a digest.

argv: image_folder gs_data_dir. The emulator env vars come from the parent test.
"""
import hashlib
import json
import sys

import rae_xla.data as data
from rae_xla.data import build


def main():
    image_folder, data_dir = sys.argv[1:3]
    assert build.main([f'--image_folder={image_folder}', f'--data_dir={data_dir}', '--name=tiny_gcs']) == 0
    cfg = dict(source='tfds', name='tiny_gcs', data_dir=data_dir, split='train', image_size=16, random_flip=True,
               num_workers=0, prefetch_factor=2, synthetic_num_classes=1, synthetic_num_images=1)
    data.validate_data_config(cfg)
    source = data.open_source(cfg)
    records = {r[2]: (hashlib.sha256(r[0]).hexdigest(), r[1], r[3]) for r in source.read_encoded(list(range(len(source))))}
    batch = next(data.make_train_loader(cfg, global_batch_size=4, process_index=0, process_count=1, seed=1,
                                        start_step=0))
    print('RESULT ' + json.dumps({'records': records, 'num_classes': source.num_classes,
                                  'batch_labels': batch['label'].tolist(),
                                  'batch_sum': int(batch['image'].sum())}))


if __name__ == '__main__':
    main()
