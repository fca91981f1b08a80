"""Run by test_xla_loader.py under PJRT_DEVICE=CPU: torch_xla is initialised BEFORE the loader starts
its (spawned) workers; batches must arrive and move to the XLA device unchanged. argv: synthetic cache dir."""
import json
import sys

import torch
import torch_xla

import rae_xla.data as data


def main():
    device = torch_xla.device()
    (torch.ones(2, device=device) * 2).sum().item()  # PJRT client and its threads are up now
    cfg = dict(source='synthetic', name='shapes', data_dir=sys.argv[1], split='train', image_size=16, random_flip=True,
               num_workers=2, prefetch_factor=2, synthetic_num_classes=4, synthetic_num_images=40)
    it = data.make_train_loader(cfg, global_batch_size=8, process_index=0, process_count=1, seed=3, start_step=2)
    sums = []
    for _ in range(3):
        batch = next(it)
        on_device = batch['image'].to(device)
        sums.append([batch['step'], int(on_device.to(torch.int64).sum().item()), int(batch['image'].to(torch.int64).sum())])
    print('RESULT ' + json.dumps({'start_method': it.loader.multiprocessing_context.get_start_method(), 'sums': sums}))


if __name__ == '__main__':
    main()
