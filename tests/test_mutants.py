"""The mutant catalogue itself (autograder/catalogue.py): whole-file variants, validation, coverage."""
from collections import Counter

import pytest

from autograder import manifest as manifest_module
from autograder import catalogue as catalogue_module
from autograder.manifest import ManifestError

MODULE_PROBLEMS = {"MultiHeadAttention", "CausalSelfAttention", "FeedForward", "Block", "Transformer",
                   "attach_attention_hook", "FixedTransformerEncoderLayer"}


def test_every_problem_has_three_wrong_variants(transformer):
    catalogue, _ = catalogue_module.load(transformer)
    counts = Counter(p for m in catalogue for p in m.problems)
    assert {p: counts[p] for p in transformer.problems if counts[p] < 3} == {}


def test_module_problems_have_diagnosed_variants(transformer):
    """Module-level mistakes (post-norm, missing residuals, misplaced dropout, ...) are named too."""
    catalogue, _ = catalogue_module.load(transformer)
    diagnosed = Counter(p for m in catalogue if m.diagnosis for p in m.problems)
    assert {p for p in MODULE_PROBLEMS if diagnosed[p] == 0} == set()


def test_whole_file_variants_replace_their_files(tmp_path, transformer):
    catalogue = {m.name: m for m in catalogue_module.load(transformer)[0]}
    whole = [m for m in catalogue.values() if m.files]
    assert len(whole) >= 3 and all(m.correct for m in whole)
    folder = catalogue_module.materialise(transformer, [catalogue["ok-file-einsum"]], tmp_path / "s")
    assert "torch.einsum" in (folder / "attention.py").read_text()
    reference = transformer.path(transformer.reference)
    assert (folder / "model.py").read_text() == (reference / "model.py").read_text()


def test_whole_files_then_edits(tmp_path, transformer):
    mutant = catalogue_module.Mutant(
        "case", (), (catalogue_module.Edit("attention.py", "def causal_mask(", "def causal_mask_renamed("),),
        files=(("attention.py", "variants/head-loop/attention.py"),))
    text = (catalogue_module.materialise(transformer, [mutant], tmp_path / "s") / "attention.py").read_text()
    assert "def causal_mask_renamed(" in text and "for h in range(num_heads)" in text


def test_a_missing_whole_file_is_reported(tmp_path, transformer):
    mutant = catalogue_module.Mutant("case", (), (), files=(("model.py", "variants/nowhere/model.py"),))
    with pytest.raises(ManifestError, match="variants/nowhere/model.py"):
        catalogue_module.materialise(transformer, [mutant], tmp_path / "s")


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
        catalogue_module.load(manifest_module.load("transformer", root))


# The classic single bugs of issue 10 §6: each has a catalogued variant that names it, in every
# problem where it can occur (its sentence shows when a student's result matches the variant's).
NAMED_CLASSES = {
    "transformer": {
        "masked_fill with 0 instead of -inf": ["mask-zero-fill-causal-mh", "mask-zero-fill-sdpa", "csa-mask-zero-fill"],
        "F.dropout without training=self.training": ["csa-functional-dropout-always-on",
                                                     "ffn-functional-dropout-always-on",
                                                     "transformer-functional-dropout-always-on"],
        "the loss averaged over padded positions too": ["lm-loss-mean-over-padding", "lm-loss-counts-padding"],
        "heads hard-coded to 4": ["mh-heads-hardcoded-4", "causal-mh-heads-hardcoded-4", "module-heads-hardcoded-4",
                                  "csa-heads-hardcoded-4"],
        "positions reversed": ["transformer-positions-reversed"],
        "sampling in place of argmax": ["decode-samples"],
        "only batch row 0 used": ["lm-loss-row-0-only", "decode-row-0-for-all"],
        "an additive mask in place of masked_fill": ["mask-additive-sdpa", "mask-additive-causal-mh",
                                                     "csa-mask-additive"],
        "merged heads without a transpose": ["merge-no-transpose-mh", "merge-no-transpose-module",
                                             "csa-merge-no-transpose"],
    },
    "foundations": {
        "masked_fill with 0 instead of -inf": ["bh-mask-zero-fill"],
        "an additive mask in place of masked_fill": ["bh-mask-additive"],
        "only batch row 0 used": ["bh-mask-row-0"],
        "heads hard-coded to 4": ["sa-heads-hardcoded-4"],
        "merged heads without a transpose": ["sa-merge-no-transpose", "mh-heads-not-moved"],
        "heads split without a transpose": ["sa-view-no-transpose", "bh-view-no-transpose"],
    },
}

# Wrong variants that carry no diagnosis, and why: their failure is not a wrong value that a
# variant could reproduce (a device, a dtype, the module's structure, a forbidden call, gradients
# or hooks), and the failure's own message names it; or their output cannot be replayed (pandas
# tables, a Hugging Face model's state, PCA signs, a trained model's accuracy, an overflow that
# fails the finiteness check first). A new wrong variant gets a diagnosis or a line here.
NO_DIAGNOSIS = {
    "transformer": {
        "device": ["mask-ignores-device", "cpu-mask-mh", "transformer-positions-on-cpu", "sdpa-reads-mask-values"],
        "dtype": ["mask-float", "float32-out-sdpa", "scale-float32-tensor-self"],
        "structure": ["module-no-bias", "module-extra-param", "ffn-hidden-width-C", "transformer-tied-weights",
                      "transformer-blocks-python-list", "transformer-blocks-sequential",
                      "transformer-one-block-repeated",
                      "transformer-extra-unused-parameter", "block-extra-unused-parameter",
                      "block-one-layernorm-shared",
                      "csa-shared-q-k-projection", "csa-shared-k-v-weight", "ffn-extra-unused-parameter"],
        "a crash (the failure shows the exception)": ["ffn-init-system-exit", "ffn-forward-system-exit",
                                                      "csa-init-huge-allocation", "block-forward-huge-allocation",
                                                      "block-init-system-exit", "mha-module-init-system-exit"],
        "inputs changed in place (the check names the input)": ["sdpa-scores-in-place-on-q", "mh-doubles-s-in-place",
                                                                "block-residual-in-place",
                                                                "lm-loss-logits-shifted-in-place",
                                                                "decode-writes-into-prompt"],
        "no error raised": ["module-no-raise"],
        "gradients": ["decode-with-grad", "hook-no-detach"],
        "hooks": ["hook-modifies-output", "hook-no-handle"],
        "forbidden call": ["self-attention-calls-torch-sdpa-alias", "sdpa-calls-torch-sdpa-and-swallows-the-error"],
        "a part's rare mistake inside a composite built from it (the part's tests show expected and got; the "
        "composite's run with the reference's part)": ["causal-mh-from-sdpa-dk-from-query-axis",
                                                       "mh-from-self-attention-dk-from-seq-axis",
                                                       "csa-uses-float-causal-mask-from-attention"],
    },
    "foundations": {
        "library tokenizers and their outputs (the message shows the tokens, and names out_type=str)": [
            "tok-sp-str-pieces", "tok-bpe-iterator-whole-corpus", "tok-bpe-ids-not-tokens"],
        "a container or an order of results (the message names the tuple, the list or the shapes)": [
            "bpe-merges-as-lists", "apply-returns-tuple", "sdpa-returns-weights-first", "labels-2d-only",
            "sa-squeeze-all"],
        "overflow on huge scores (that test's own message names a global max)": ["softmax-global-max"],
        "gradients kept (the check names requires_grad)": ["ps-grad-kept", "am-grad-kept"],
        "a Hugging Face model's inputs or outputs (the pandas table or the maps differ)": [
            "ps-no-special-tokens", "ps-ix-restarts", "am-batch-kept"],
        "value mistakes the fourth red team catalogued without a diagnosis yet (the failure shows the call, "
        "the expected and the returned values; a replay may name them later)": [
            "sdpa-k-dot-T", "mh-no-transpose-projection", "bh-heads-strided", "labels-skip-neighbour",
            "sa-pre-norm", "sa-softmax-over-queries", "sa-embed-scaled"],
        "library tokenizers": ["tok-bpe-whitespace", "tok-bpe-no-unk", "tok-sp-unigram", "tok-vocab-ignored"],
        "fails only against fixed or library results": ["bpe-distinct-words"],
        "overflow (the finiteness check names it)": ["softmax-naive"],
        "pandas table": ["ps-notebook-hidden0", "ps-no-eval", "ps-sentence-position", "ps-word-is-hidden0"],
        "PCA signs": ["pca-not-centered", "pca-smallest-components", "pca-components-swapped"],
        "Hugging Face model": ["am-no-eager", "am-no-eval", "am-last-layer-only"],
        "forbidden call": ["bh-calls-the-module", "softmax-tensor-method", "softmax-special", "softmax-nn-module",
                           "softmax-log-softmax-exp", "softmax-aten-op", "sdpa-functional-softmax",
                           "mh-torch-attention", "bh-eager-attention-function", "bh-module-forward",
                           "sa-functional-multi-head"],
        "inputs changed in place (the check names the input)": [
            "softmax-in-place", "sdpa-scales-query-in-place", "mh-reshapes-x-in-place", "pairs-empties-words",
            "wp-rewrites-words", "apply-consumes-merges", "tok-strips-texts", "ps-marks-df",
            "cos-normalises-in-place", "pca-centers-in-place", "bh-clears-the-mask", "labels-clobber-sequences"],
        "training": ["sa-rule-in-forward", "sa-features-detached"],
        "shape (the check names the shape)": ["sa-logits-keep-last-dim"],
    },
    "training": {
        "optimiser groups and class (the message names the parameters or the class)": [
            "decay-everything", "decay-embeddings", "decay-all-weights-by-name", "decay-on-biases",
            "decay-groups-swapped", "optimizer-adam-l2", "optimizer-default-betas"],
        "a training step: a replay would train the reference's model and optimiser again (the message names "
        "what differs: the loss, gradients, AdamW's moments, weights, the learning rate)": [
            "step-no-zero-grad", "clip-after-step", "clip-before-backward", "clip-by-value", "lr-set-after-step",
            "lr-of-next-step", "step-loss-after-update"],
        "a tensor where a float is due (the message says so)": [
            "lr-tensor", "step-returns-tensor", "eval-returns-tensors", "overfit-keeps-tensors"],
        "mode and gradient recording (the message names them)": [
            "step-no-train-mode", "eval-mode-not-restored", "eval-always-train-after", "eval-no-no-grad",
            "sample-with-grad"],
        "training": ["overfit-no-optimizer-step", "overfit-zero-grad-after-backward", "overfit-steps-off-by-one",
                     "overfit-loss-after-update"],
        "device": ["sample-greedy-on-cpu"],
        "a key or field of Hugging Face's objects (the message names the key, or the TrainingArguments field "
        "that differs)": [
            "tokenize-labels-under-label", "tokenize-wrong-label-field", "metrics-eval-prefix", "args-no-eval-strategy",
            "args-saves-checkpoints", "args-default-eval-batch-size", "args-default-learning-rate", "args-seed-ignored",
            "args-epochs-as-steps"],
        "an accuracy many mistakes share (the message shows the call, the expected and the returned accuracy)": [
            "metrics-argmax-axis-0", "metrics-swapped"],
        "a Trainer run or a classifier's training loop: a replay would train again (the message names what "
        "differs: a missing eval_accuracy, the loss, gradients, Adam's moments, weights, the history)": [
            "fine-tune-no-compute-metrics", "fine-tune-returns-train-metrics", "fine-tune-evaluates-train-set",
            "fine-tune-no-training", "fine-tune-metric-of-first-batch", "cls-no-zero-grad", "cls-step-before-backward",
            "cls-train-mean-of-batch-losses", "cls-train-last-batch-loss", "cls-history-evaluates-before-training",
            "cls-history-one-epoch-short"],
        "the classifier's mode, gradients and return type (the message names them)": [
            "cls-train-no-train-mode", "cls-eval-mode-not-restored", "cls-eval-no-no-grad", "cls-train-returns-tensor",
            "cls-eval-returns-tensor"],
        "the optimiser's groups, clipping or identity (the message names the group, the clipped moment or the "
        "optimiser that never stepped)": ["step-lr-first-group-only", "overfit-no-clip", "overfit-own-optimizer"],
    },
}
# of the wrong variants, at least (the rest: NO_DIAGNOSIS)
DIAGNOSED_SHARE = {"transformer": 0.65, "foundations": 0.45, "training": 0.3}


def _catalogue(name):
    return {m.name: m for m in catalogue_module.load(manifest_module.load(name))[0]}


@pytest.mark.parametrize("assignment", sorted(NAMED_CLASSES))
def test_classic_bugs_are_catalogued_with_a_diagnosis(assignment):
    catalogue = _catalogue(assignment)
    missing = {cls: [n for n in names if n not in catalogue or catalogue[n].correct or not catalogue[n].diagnosis]
               for cls, names in NAMED_CLASSES[assignment].items()}
    assert {cls: names for cls, names in missing.items() if names} == {}


@pytest.mark.parametrize("assignment", sorted(NO_DIAGNOSIS))
def test_every_wrong_variant_is_diagnosed_or_says_why_not(assignment):
    catalogue = _catalogue(assignment)
    excused = {n for names in NO_DIAGNOSIS[assignment].values() for n in names}
    wrong = [m for m in catalogue.values() if not m.correct]
    assert sorted(m.name for m in wrong if not m.diagnosis and m.name not in excused) == []
    assert sorted(n for n in excused if n not in catalogue or catalogue[n].diagnosis) == []  # the list stays true
    share = sum(1 for m in wrong if m.diagnosis) / len(wrong)
    assert share >= DIAGNOSED_SHARE[assignment], f"{share:.0%} of {assignment}'s wrong variants are diagnosed"

