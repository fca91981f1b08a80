"""House rules a grep can check (STYLE.md rules 3, 5, 6, 14)."""
import glob
import os
import re

from tests.conftest import REPO

LIBRARY = sorted(glob.glob(os.path.join(REPO, "rae_xla", "**", "*.py"), recursive=True))


def _rel(path):
    return os.path.relpath(path, REPO)


def _source(path):
    with open(path) as f:
        return f.read()


def test_library_files_exist():
    assert len(LIBRARY) > 30  # The globs below must see the package.


def test_torch_xla_is_imported_only_under_runtime():
    offenders = [_rel(p) for p in LIBRARY
                 if re.search(r"^\s*(import torch_xla|from torch_xla)", _source(p), re.M)
                 and not _rel(p).startswith(os.path.join("rae_xla", "runtime"))]
    assert offenders == []


def test_model_flow_and_loss_code_never_names_a_device():
    pattern = re.compile(r"\.cuda\(|device=['\"](cuda|xla)|xla_device\(|^\s*(import|from) torch_xla", re.M)
    offenders = [_rel(p) for p in LIBRARY
                 if re.match(r"rae_xla/(models|flow|losses)/", _rel(p)) and pattern.search(_source(p))]
    assert offenders == []


def test_absl_flags_only_in_main_and_standalone_tools():
    offenders = []
    for path in LIBRARY:
        source = _source(path)
        if re.search(r"flags\.DEFINE_|config_flags\.DEFINE_", source) and _rel(path) != "rae_xla/main.py":
            if 'if __name__ == "__main__"' not in source:  # A small tool with its own entry point may have flags.
                offenders.append(_rel(path))
    assert offenders == []


def test_no_grab_bag_modules_and_files_stay_small():
    assert not [p for p in LIBRARY if os.path.basename(p) in ("utils.py", "helpers.py", "misc.py")]
    too_long = {_rel(p): n for p in LIBRARY if (n := len(_source(p).splitlines())) > 600}
    assert too_long == {}


TESTS = sorted(p for p in glob.glob(os.path.join(REPO, "tests", "**", "*.py"), recursive=True)
               if os.path.basename(p).startswith("test_"))


def test_every_test_that_starts_xla_carries_the_xla_marker():
    """The conftest rule (skip without a wheel, fail on Linux x86_64) is applied by `run_python(xla_devices=n)`
    itself, and by `pytest.mark.xla` for everything else: a test file that sets PJRT_DEVICE on its own must carry
    the marker."""
    sets_pjrt = re.compile(r"PJRT_DEVICE=['\"]CPU")
    offenders = [_rel(p) for p in TESTS if sets_pjrt.search(_source(p)) and "pytest.mark.xla" not in _source(p)]
    assert len(TESTS) > 20 and offenders == []


def test_tests_never_read_outside_the_repository():
    """Oracle data comes from tests/golden through its resolver; a fresh clone has no sibling folders."""
    outside = re.compile(r"\.\./shared|['\"]/(work|home|root|data|mnt)/|expanduser\(")
    offenders = [_rel(p) for p in glob.glob(os.path.join(REPO, "tests", "**", "*.py"), recursive=True)
                 if outside.search(_source(p)) and _rel(p) != os.path.join("tests", "test_policy.py")]
    assert offenders == []
