"""The writers on a gs:// workdir, against an in-process GCS emulator (no network)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def gcs_bucket_env():
    from gcp_storage_emulator import server
    bucket = "rae-metrics"
    emulator = server.create_server("127.0.0.1", 0, in_memory=True, default_bucket=bucket)
    emulator.start()
    endpoint = f"http://127.0.0.1:{emulator._api._httpd.server_address[1]}"
    # ZB_HNS off: otherwise gcsfs asks a gRPC API the emulator lacks and waits 60 s per call (docs/ecosystem.md §4).
    env = dict(os.environ, STORAGE_EMULATOR_HOST=endpoint, GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")
    yield bucket, env
    emulator.stop()


def test_default_writer_on_gcs_appends_resumes_and_writes_events(gcs_bucket_env):
    bucket, env = gcs_bucket_env
    script = Path(__file__).with_name("gcs_writer_check.py")
    result = subprocess.run([sys.executable, str(script), bucket], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK" in result.stdout
