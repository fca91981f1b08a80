"""House rules a grep can check: one backend layer, device-free models, flags only in main.py, small files, no
references to documents outside the repository."""
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


# Citations of the project's own documents: `docs/reference.md §4.3`, `docs/xla_notes.md §5.1 item 3`,
# `docs/reference.md §3.3, §4.6`, `docs/reference.md §1.2-§1.6`. Every § number after the file name (a list
# joined by ', ', '/', ' / ', ' and ', '-' or '–') must be a heading of that file: `## §4 ...`, `### §4.3 ...`.
CITED_DOCS = ("reference", "xla_notes", "ecosystem", "design")
_CITATION = re.compile(r"docs/(\w+)\.md((?:(?:\s*(?:,|/|and|-|–)\s*|\s+)§\d+(?:\.\d+)*)+)")
_SECTION_NUMBER = re.compile(r"§(\d+(?:\.\d+)*)")
_HEADING = re.compile(r"^#{1,6}\s+§(\d+(?:\.\d+)*)\b", re.M)
# The developer documents outside the repository that code used to cite, in any spelling: a fresh clone has
# none of them, so a comment pointing there points nowhere.
_OLD_CITATION = re.compile(r"\bREFERENCE(?:\.md)?\s*§|\bXLA_NOTES\b|\bECOSYSTEM(?:\.md)?\s*§|\bDESIGN\.md\b"
                           r"|\bDESIGN \"|\bSTYLE(?:\.md)? rules?\b|shared/docs")


def _cited_files():
    """Every text file a reader meets: code, configs, launch scripts, tests, docs, README, Makefile."""
    paths = []
    for pattern in ("**/*.py", "**/*.md", "**/*.sh", "Makefile"):
        paths += glob.glob(os.path.join(REPO, pattern), recursive=True)
    skip = ("tests/golden/", ".venv/", "build/", ".git/", "runs/")
    return sorted(p for p in set(paths) if not _rel(p).startswith(skip) and ".egg-info" not in p)


def _citations(text):
    for match in _CITATION.finditer(text):
        for number in _SECTION_NUMBER.findall(match.group(2)):
            yield match.group(1), number


def _headings(name):
    return set(_HEADING.findall(_source(os.path.join(REPO, "docs", f"{name}.md"))))


def test_citation_scanner_reads_lists_and_ranges():
    text = ("(docs/reference.md §3.3, §4.6) docs/xla_notes.md §5.1 item 3; docs/reference.md §1.2-§1.6 and "
            "docs/reference.md §4.4–§4.5, docs/reference.md §6.1/§5.7; docs/ecosystem.md §7")
    assert list(_citations(text)) == [("reference", "3.3"), ("reference", "4.6"), ("xla_notes", "5.1"),
                                      ("reference", "1.2"), ("reference", "1.6"), ("reference", "4.4"),
                                      ("reference", "4.5"), ("reference", "6.1"), ("reference", "5.7"),
                                      ("ecosystem", "7")]
    assert _OLD_CITATION.search("see REFERENCE §4.3") and _OLD_CITATION.search("(XLA_NOTES.md §3)")
    assert not _OLD_CITATION.search("adm.REFERENCE_KEYS; REFERENCE = dict(hidden_size=384)")


def test_every_docs_citation_names_an_existing_section():
    files = _cited_files()
    assert len(files) > 100  # The scan must see the repository.
    headings = {name: _headings(name) for name in CITED_DOCS}
    seen, broken = 0, []
    for path in files:
        for name, number in _citations(_source(path)):
            seen += 1
            if name not in headings:
                broken.append(f"{_rel(path)}: docs/{name}.md is not one of the cited documents {CITED_DOCS}")
            elif number not in headings[name]:
                broken.append(f"{_rel(path)}: docs/{name}.md has no heading §{number}")
    assert seen > 80 and broken == []


def _old_citations(path):
    return [f"{_rel(path)}:{i}" for i, line in enumerate(_source(path).splitlines(), 1) if _OLD_CITATION.search(line)]


def test_nothing_cites_documents_outside_the_repository():
    """REFERENCE/XLA_NOTES/ECOSYSTEM/DESIGN/STYLE were developer documents that never shipped; their content is
    in docs/reference.md, docs/xla_notes.md, docs/ecosystem.md and docs/design.md (same section numbers)."""
    offenders = [hit for p in _cited_files() if _rel(p) != os.path.join("tests", "test_policy.py")
                 for hit in _old_citations(p)]
    assert offenders == []
