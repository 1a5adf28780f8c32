"""Every catalogued mutant of every assignment is graded as its entry says (autograder/mutants.py).

A wrong variant loses points in its own problems only (and shows its diagnosis, if it has one);
a correct variant gets full marks. The catalogues are large, so each is graded in CHUNKS slices
that pytest-xdist (`make test` runs `-n`) spreads over the cores.
"""
import pytest

from autograder import manifest as manifest_module
from autograder import catalogue as catalogue_module
from autograder import mutants as mutants_module

ASSIGNMENTS = ["transformer", "foundations", "training"]
CHUNKS = 4


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_catalogue_has_wrong_and_correct_variants(assignment):
    catalogue, _ = catalogue_module.load(manifest_module.load(assignment))
    assert len(catalogue) >= 40
    assert any(m.correct for m in catalogue) and any(not m.correct for m in catalogue)


@pytest.mark.parametrize("chunk", range(CHUNKS))
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_catalogued_mutants_lose_points_only_where_their_bug_is(assignment, chunk):
    manifest = manifest_module.load(assignment)
    names = [m.name for m in catalogue_module.load(manifest)[0]][chunk::CHUNKS]
    verdicts = mutants_module.check_all(manifest, names)
    assert len(verdicts) == len(names)
    assert [f"{v.mutant.name}: {v.problems}" for v in verdicts if not v.ok] == []
