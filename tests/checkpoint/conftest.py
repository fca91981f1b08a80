"""The in-process GCS emulator fixture of the data tests, for the gs:// checkpoint tests."""
from tests.data.conftest import gcs_emulator  # noqa: F401  pylint: disable=unused-import
