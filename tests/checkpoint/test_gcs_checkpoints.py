"""Checkpoints on gs:// against the local GCS emulator: save (async, parallel writers), keep-K pruning, an
interrupted save ignored, and a save on a 2x2 XLA mesh restored exactly onto a 4x1 mesh.

Everything gs:// runs in subprocesses with the emulator's env vars, so gcsfs state never leaks between tests.
"""
import json
import os

from tests.conftest import REPO, run_python

SCRIPT = os.path.join(os.path.dirname(__file__), "gcs_checkpoint_script.py")


def _env(endpoint):
    return dict(STORAGE_EMULATOR_HOST=endpoint, GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false", PYTHONPATH=REPO)


def test_gcs_save_prune_interrupted_and_restore(gcs_emulator):
    endpoint, bucket = gcs_emulator
    result = run_python([SCRIPT, f"gs://{bucket}/manager"], env=_env(endpoint))
    (line,) = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    got = json.loads(line[len("RESULT "):])
    assert got["listing"] == ["2", "3", "4"]  # keep=2 pruned step 1; step 4 is the interrupted save.
    assert not got["step4_committed"] and "__0_0.distcp" in got["step4_files"]  # Its shards were written...
    assert got["restored_step"] == 3 and got["exact"]  # ...but it is never restored from.
    assert got["verify3"] is None
    assert got["record_names"] == [".metadata", "__0_0.distcp", "__0_1.distcp"]  # Two writer threads.


def test_gcs_checkpoint_from_a_2x2_mesh_restores_exactly_onto_4x1(gcs_emulator, tmp_path):
    endpoint, bucket = gcs_emulator
    ckpt = f"gs://{bucket}/selftest"
    saved, restored = tmp_path / "saved.json", tmp_path / "restored.json"
    run_python(["-m", "rae_xla.runtime.selftest", "--backend=xla", "--mesh=2,2", "--steps=2", f"--save_to={ckpt}",
                "--async_save", f"--out={saved}"], xla_devices=4, env=_env(endpoint))
    run_python(["-m", "rae_xla.runtime.selftest", "--backend=xla", "--mesh=4,1", f"--restore_from={ckpt}",
                f"--out={restored}"], xla_devices=4, env=_env(endpoint))
    a, b = json.loads(saved.read_text()), json.loads(restored.read_text())
    assert b["meta"]["step"] == 2 and b["mesh"] == {"data": 4, "fsdp": 1}
    assert set(a["tensors"]) == set(b["tensors"]) and any(k.startswith("exp_avg/") for k in b["tensors"])
    assert all(a["tensors"][k] == b["tensors"][k] for k in a["tensors"])  # Exact, optimizer state included.
