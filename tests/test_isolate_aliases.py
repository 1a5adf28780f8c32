"""`isolate` markers replace a name in the other submitted files too when they imported it by name
(`from attention import causal_mask` in model.py): a CausalSelfAttention built on a buggy causal_mask
lost all of its points as well (red-team; mutant `csa-uses-float-causal-mask-from-attention`)."""

from autograder.kit import adapter


def test_substituted_replaces_the_aliases_in_other_files_and_puts_them_back(tmp_path):
    (tmp_path / "attention.py").write_text("def causal_mask(T):\n    return 'student'\n")
    (tmp_path / "model.py").write_text(
        "from attention import causal_mask\nfrom attention import causal_mask as cm\nimport attention\n\n"
        "def use():\n    return causal_mask(1), cm(1), attention.causal_mask(1)\n")
    (tmp_path / "debugging.py").write_text("def causal_mask(T):\n    return 'its own'\n")
    submission = adapter.Submission(tmp_path)
    model, debugging = submission.module("model"), submission.module("debugging")

    with submission.substituted("attention", {"causal_mask": lambda T: "reference"}):
        assert model.use() == ("reference", "reference", "reference")
        assert debugging.causal_mask(1) == "its own"  # a function of its own with the same name stays

    assert model.use() == ("student", "student", "student")
    assert debugging.causal_mask(1) == "its own"
