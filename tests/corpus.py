"""Where the shared CoT corpus is, for tests that want real samples.

The corpus is data kept beside the repository (``../shared/cot-corpus`` from the repo root), not in
it. Tests that use it must also cover the same cases with their own inline fixtures, so that the
suite still means something where the corpus is absent; there, corpus tests skip with
:data:`ABSENT_REASON`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPECTED_CORPUS_DIR = REPO_ROOT.parent / "shared" / "cot-corpus"
# NOTE: a read-only existence check; nothing else happens at import.
CORPUS_DIR: Path | None = EXPECTED_CORPUS_DIR if EXPECTED_CORPUS_DIR.is_dir() else None
ABSENT_REASON = (
    f"CoT corpus absent: no directory {EXPECTED_CORPUS_DIR} (../shared/cot-corpus from the repo "
    "root); corpus tests cannot run"
)


def corpus_xml_files() -> list[Path]:
    """Every ``*.xml`` sample of the corpus, sorted by name; empty if the corpus is absent.

    The ``.bin`` files (TAK protocol v1 protobuf) are left out.
    """
    if CORPUS_DIR is None:
        return []
    return sorted(CORPUS_DIR.glob("*.xml"))


def require_corpus() -> Path:
    """Return the corpus directory, or skip the calling test saying plainly that it is absent."""
    if CORPUS_DIR is None:
        pytest.skip(ABSENT_REASON)
    return CORPUS_DIR


def corpus_params() -> list[object]:
    """``pytest.mark.parametrize`` values, one per corpus XML file, with the file name as id.

    Where the corpus is absent this is a single ``None`` case with the id ``corpus-absent``; the
    test should start with ``require_corpus()`` so that it skips with the reason.
    """
    files = corpus_xml_files()
    if not files:
        return [pytest.param(None, id="corpus-absent")]
    return [pytest.param(path, id=path.name) for path in files]
