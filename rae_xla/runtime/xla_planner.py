"""A save planner that fixes torch_xla 2.9's silent checkpoint data loss (docs/xla_notes.md §0.4, §6.2).

With a tensor sharded on one mesh axis and replicated on another inside one process (e.g. 'fsdp'-sharded
weights on a (2, 2) ('data', 'fsdp') mesh), `SPMDSavePlanner` emits one write item per local shard, so each
replicated copy appears with the same (fqn, offset). torch's global `dedup_tensors` keys on `MetadataIndex`,
whose `index` field is excluded from equality, so the copies collide and ALL of them are dropped: the save
"succeeds" with no tensor data and the next load fails with KeyError (pytorch/xla#7919, #7118).
Keeping only the first item per (fqn, offset) in the local plan leaves the global dedup nothing to delete.
"""
from __future__ import annotations

import dataclasses

from torch_xla.experimental.distributed_checkpoint import SPMDSavePlanner


class DedupSPMDSavePlanner(SPMDSavePlanner):
    """`SPMDSavePlanner` whose local plan holds exactly one write item per distinct shard."""

    def create_local_plan(self):
        plan = super().create_local_plan()
        seen = set()
        kept = []
        for item in plan.items:
            offset = tuple(item.index.offset) if item.index.offset is not None else None
            key = (item.index.fqn, offset)
            if key not in seen:
                seen.add(key)
                kept.append(item)
        return dataclasses.replace(plan, items=kept)
