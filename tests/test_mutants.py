"""The mutant catalogue itself (autograder/mutants.py): whole-file variants, validation, coverage."""
from collections import Counter

import pytest

from autograder import manifest as manifest_module
from autograder import mutants as mutants_module
from autograder.manifest import ManifestError

MODULE_PROBLEMS = {"MultiHeadAttention", "CausalSelfAttention", "FeedForward", "Block", "Transformer",
                   "attach_attention_hook", "FixedTransformerEncoderLayer"}


def test_every_problem_has_three_wrong_variants(transformer):
    catalogue, _ = mutants_module.load(transformer)
    counts = Counter(p for m in catalogue for p in m.problems)
    assert {p: counts[p] for p in transformer.problems if counts[p] < 3} == {}


def test_module_problems_have_diagnosed_variants(transformer):
    """Module-level mistakes (post-norm, missing residuals, misplaced dropout, ...) are named too."""
    catalogue, _ = mutants_module.load(transformer)
    diagnosed = Counter(p for m in catalogue if m.diagnosis for p in m.problems)
    assert {p for p in MODULE_PROBLEMS if diagnosed[p] == 0} == set()


def test_whole_file_variants_replace_their_files(tmp_path, transformer):
    catalogue = {m.name: m for m in mutants_module.load(transformer)[0]}
    whole = [m for m in catalogue.values() if m.files]
    assert len(whole) >= 3 and all(m.correct for m in whole)
    folder = mutants_module.materialise(transformer, [catalogue["ok-file-einsum"]], tmp_path / "s")
    assert "torch.einsum" in (folder / "attention.py").read_text()
    reference = transformer.path(transformer.reference)
    assert (folder / "model.py").read_text() == (reference / "model.py").read_text()


def test_whole_files_then_edits(tmp_path, transformer):
    mutant = mutants_module.Mutant(
        "case", (), (mutants_module.Edit("attention.py", "def causal_mask(", "def causal_mask_renamed("),),
        files=(("attention.py", "variants/head-loop/attention.py"),))
    text = (mutants_module.materialise(transformer, [mutant], tmp_path / "s") / "attention.py").read_text()
    assert "def causal_mask_renamed(" in text and "for h in range(num_heads)" in text


def test_a_missing_whole_file_is_reported(tmp_path, transformer):
    mutant = mutants_module.Mutant("case", (), (), files=(("model.py", "variants/nowhere/model.py"),))
    with pytest.raises(ManifestError, match="variants/nowhere/model.py"):
        mutants_module.materialise(transformer, [mutant], tmp_path / "s")


@pytest.mark.parametrize("entry, message", [
    ('files = { "model.py" = "variants/x/model.py" }\ndiagnosis = "x"', "cannot carry a diagnosis"),
    ('files = { "model.py" = "../../reference/transformer/model.py" }', "inside the assignment folder"),
    ('files = { "notes.py" = "variants/x/notes.py" }', "unknown problems or files"),
])
def test_catalogue_errors(tmp_path, copy_root, entry, message):
    root = copy_root(tmp_path / "root")
    toml = root / "assignments" / "transformer" / "mutants.toml"
    toml.write_text(toml.read_text() + f'\n[[mutant]]\nname = "bad"\nproblems = []\n{entry}\n')
    with pytest.raises(ManifestError, match=message):
        mutants_module.load(manifest_module.load("transformer", root))
