"""W&B logging offline: a short stage-2 run writes its scalars and sample grids to the offline run, and a restarted
run continues the same run id. The offline run file is read back record by record (wandb's LevelDB-style log of
protobuf records), so the test checks what W&B would upload, not just that a folder exists."""
import json
import os
import struct

from tests.conftest import run_python


def read_offline_run(path: str) -> dict:
    """{'run_ids': [...], 'history': [{key: value}, ...]} from an offline `run-<id>.wandb` file."""
    from wandb.proto import wandb_internal_pb2
    data = open(path, "rb").read()
    block, pos, pending, records = 32768, 7, b"", []  # 7-byte file header, then 32 KiB blocks of records
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block tail too short for a record header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0:
            pos += left - 7
            continue
        pending += data[pos:pos + length]
        pos += length
        if kind in (1, 4):  # FULL or LAST fragment: a record is complete
            records.append(pending)
            pending = b""
    out = {"run_ids": [], "history": []}
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run_ids"].append(record.run.run_id)
        elif kind == "history":
            out["history"].append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                   for item in record.history.item})
    return out


def _args(workdir, data_dir, steps):
    return ["-m", "rae_xla.main", f"--config=configs/quickstart.py:steps={steps},batch=8", f"--workdir={workdir}",
            f"--config.data.data_dir={data_dir}", "--config.data.synthetic_num_images=64",
            "--config.data.num_workers=0", "--config.train.log_every=2", "--config.train.sample_every=4",
            "--config.train.checkpoint_every=4", "--config.train.num_sample_images=2",
            "--config.train.wandb.enabled=True", "--config.train.wandb.mode=offline",
            "--config.train.wandb.project=rae-test"]


def test_offline_run_logs_scalars_and_images_and_resumes_the_same_run(tmp_path):
    workdir, data_dir = tmp_path / "run", tmp_path / "tfds"
    env = {"WANDB_SILENT": "true"}
    run_python(_args(workdir, data_dir, 4), env=env)
    run_id = (workdir / "wandb_run_id").read_text().strip()
    run_python(_args(workdir, data_dir, 8), env=env)  # resumes from the step-4 checkpoint
    assert (workdir / "wandb_run_id").read_text().strip() == run_id

    runs = sorted(p for p in os.listdir(workdir / "wandb") if p.startswith("offline-run-"))
    assert len(runs) == 2 and all(r.endswith(f"-{run_id}") for r in runs)
    first, second = (read_offline_run(str(workdir / "wandb" / r / f"run-{run_id}.wandb")) for r in runs)
    assert first["run_ids"] == [run_id] and second["run_ids"] == [run_id]

    steps = {h["_step"]: h for h in first["history"] + second["history"]}
    assert {2, 4, 6, 8} <= set(steps)
    assert all(isinstance(steps[s]["loss"], float) and steps[s]["loss"] > 0 for s in (2, 4, 6, 8))
    images = [h for h in first["history"] + second["history"] if "samples/_type" in h]  # nested keys come flat
    assert [h["_step"] for h in images] == [4, 8]  # the step-4 and step-8 preview grids
    assert all(h["samples/_type"] == "image-file" and h["samples/format"] == "png" for h in images)
    media = [f for r in runs for f in os.listdir(workdir / "wandb" / r / "files" / "media" / "images")]
    assert len(media) == 2 and all(f.endswith(".png") for f in media)


def test_disabled_by_default_writes_nothing(tmp_path):
    from configs import quickstart
    assert quickstart.get_config().train.wandb.enabled is False
    workdir = tmp_path / "run"
    run_python(["-m", "rae_xla.main", "--config=configs/quickstart.py:steps=1,batch=8", f"--workdir={workdir}",
                f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.data.synthetic_num_images=16",
                "--config.data.num_workers=0", "--config.train.sample_every=0"])
    assert not (workdir / "wandb").exists() and not (workdir / "wandb_run_id").exists()
