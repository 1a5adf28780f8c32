"""The public tests test what they claim, and catch the pitfalls the handouts name (issue 11).

Two audits, each on the PUBLIC tests alone, run as a student runs them (`make public`: the
course plugin, no reference, no sandbox, no hidden tests):

1. **Claims.** A recording listener (`adapter.call_listeners`) sees every call a public test
   makes into the reference's code, with its arguments. A test whose name or docstring claims
   something of its input (the small table `CLAIMS` below: padding, several heads, a batch,
   several tokens, T_q != T_k) must give at least one call whose arguments show it. "A padded
   batch of two sentences" whose sentences tokenize to the same length has no padding: caught.
2. **Pitfalls.** Each mutant in `PITFALL_MUTANTS` (a catalogued wrong variant whose bug is a
   pitfall the handout names) must fail at least one public test of each of its problems.

Both run one child process per assignment (torch is imported once); the mutants share it,
one `pytest.main` each, restricted to their own problems' tests that run a function the mutant
changed (autograder/impact.py: the others pass as they do on the reference). This file is also that child:
`python tests/test_public_audit.py MODE ASSIGNMENT WORKDIR ...` (see `main`).
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ASSIGNMENTS = ["transformer", "foundations", "training"]

# ---------------------------------------------------------------------------------------------
# 1. Claims: what a test's name or docstring says of its input, and how a call shows it.
# ---------------------------------------------------------------------------------------------

# (feature, pattern in the test's name + docstring, what a call must show). The text searched is
# lower-cased, and the test's own problem names are removed from it first (a `causal_mask` test
# claims no padding by its name).
CLAIMS = [
    ("padding", r"padd|\bmask", "a mask argument holding both 0 and non-0 entries "
                                 "(lm_loss: a target equal to pad_token_id)"),
    ("heads", r"\bheads\b", "more than one head (num_heads, heads, n_heads, a model's config, "
                            "a stack of per-head weights, or queries (B, H, T, d))"),
    ("batch", r"\bbatch", "a batch of more than one (the data input's first dimension)"),
    ("tokens", r"causal|future|position", "more than one token (the data input's T)"),
    ("non_square", r"\bt_q\b", "T_q != T_k (queries and keys of different lengths)"),
]
MASK_NAMES = {"mask", "attention_mask"}
HEAD_NAMES = {"num_heads", "heads", "n_heads"}
PER_HEAD_WEIGHTS = {"W_q"}  # (H, d_k, d_model): foundations' per-head projections
# The argument that holds the data, by name: activations (B, T, d) or (T, d), token ids (B, T).
DATA_NAMES = ("S", "x", "X", "Q", "input_ids", "hidden_states", "sequences", "logits", "batch")


def _array(value):
    """`value` as a NumPy array if it is a tensor or an array, else None."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        if value.device.type == "meta":
            return None
        return value.detach().cpu().float().numpy() if value.is_floating_point() or value.dtype.is_complex \
            else value.detach().cpu().numpy()
    if type(value).__module__ == "numpy" and hasattr(value, "shape"):
        return value
    return None


def _bound_arguments(obj, args: tuple, kwargs: dict) -> dict:
    """{parameter name: value} of a call of `obj` (a function, a class or a module), defaults included."""
    import inspect

    target = obj.forward if hasattr(obj, "forward") and not isinstance(obj, type) else obj
    try:
        bound = inspect.signature(target).bind_partial(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)
    except (TypeError, ValueError):
        return {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}


def _heads_of_model(value) -> int:
    config = getattr(value, "config", None)
    for name in ("n_heads", "num_attention_heads", "n_head"):
        heads = getattr(config, name, None)
        if isinstance(heads, int):
            return heads
    return 0


def features_of(name: str, arguments: dict) -> set[str]:
    """What one call's arguments show (the features of `CLAIMS`)."""
    import numpy as np

    found = set()
    for key, value in arguments.items():
        array = _array(value)
        if key in MASK_NAMES and array is not None and (array == 0).any() and (array != 0).any():
            found.add("padding")
        if key in HEAD_NAMES and isinstance(value, int) and value > 1:
            found.add("heads")
        if key in PER_HEAD_WEIGHTS and array is not None and array.ndim == 3 and array.shape[0] > 1:
            found.add("heads")
        if _heads_of_model(value) > 1:
            found.add("heads")
    loader = arguments.get("loader")
    batches = list(loader) if isinstance(loader, (list, tuple)) else []   # training's evaluate(model, loader)
    if "pad_token_id" in arguments:  # lm_loss(logits, input_ids, ...), training's train_step(model, batch, ...)
        for ids in map(_array, [arguments.get("input_ids"), arguments.get("batch"), *batches]):
            if ids is not None and ids.ndim == 2 and (ids[:, 1:] == arguments["pad_token_id"]).any():
                found.add("padding")
    data = next((_array(arguments[key]) for key in DATA_NAMES if _array(arguments.get(key)) is not None),
                _array(batches[0]) if batches else None)
    if data is not None and data.ndim >= 2:
        ids = np.issubdtype(data.dtype, np.integer)
        if (data.ndim >= 3 or ids) and data.shape[0] > 1:
            found.add("batch")
        if (data.shape[-1] if ids else data.shape[-2]) > 1:
            found.add("tokens")
    queries, keys = _array(arguments.get("Q")), _array(arguments.get("K"))
    if queries is not None and queries.ndim == 4 and queries.shape[1] > 1:  # (B, H, T, d): heads given split
        found.add("heads")
    if queries is not None and keys is not None and queries.ndim >= 2 and keys.ndim >= 2 \
            and queries.shape[-2] != keys.shape[-2]:
        found.add("non_square")
    return found


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def claims_of(test: dict) -> set[str]:
    """The features a collected test (`name`, `doc`, `problems`) claims in its name or docstring."""
    text = f"{test['name']} {test.get('doc', '')}".lower()
    for problem in test["problems"]:
        text = text.replace(_snake(problem), " ").replace(problem.lower(), " ")
    return {feature for feature, pattern, _ in CLAIMS if re.search(pattern, text)}


def unsupported_claims(tests: list[dict], features: dict[str, list[str]]) -> list[str]:
    """'nodeid: claims X, but no call shows <what>' for every claim no recorded call supports."""
    shows = {feature: what for feature, _, what in CLAIMS}
    return [f"{test['nodeid']}: claims {feature}, but no call shows {shows[feature]}"
            for test in tests for feature in sorted(claims_of(test) - set(features.get(test["nodeid"], [])))]


class Recorder:
    """A pytest plugin (child side): the features of the calls each test makes into student code."""

    def __init__(self):
        self.features: dict[str, set[str]] = {}
        self.calls: dict[str, int] = {}
        self.current: str | None = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.current = item.nodeid
        self.features.setdefault(item.nodeid, set())
        self.calls.setdefault(item.nodeid, 0)
        yield
        self.current = None

    def listen(self, obj, name, args, kwargs) -> None:
        if self.current is None:
            return
        self.calls[self.current] += 1
        self.features[self.current] |= features_of(name.split(".")[-1], _bound_arguments(obj, args, kwargs))


# ---------------------------------------------------------------------------------------------
# 2. Pitfalls: catalogued wrong variants that the public tests must catch.
# ---------------------------------------------------------------------------------------------

# assignment -> {mutant: the handout's words it breaks}. Each must fail a public test of each of
# its problems.
PITFALL_MUTANTS = {
    "transformer": {
        "noscale-self": "self_attention: the scale is 1/sqrt(d_k)",
        "scale-dk-self": "self_attention: the scale is 1/sqrt(d_k), not 1/d_k",
        "softmax-dim2-self": "self_attention: the softmax runs over the keys",
        "scale-float32-tensor-self": "self_attention: compute the scale as a Python float (float64 inputs)",
        "view-no-transpose-mh": "multi_head_attention: view(B, T, H, dh) then transpose(1, 2)",
        "heads-interleaved-mh": "multi_head_attention: head h uses columns h*dh:(h+1)*dh",
        "scale-sqrt-d-mh": "multi_head_attention: scale 1/sqrt(dh)",
        "mask-no-diag": "causal_mask: True where j <= i",
        "mask-future": "causal_mask: True where j <= i",
        "mask-after-softmax-mh": "causal_multi_head_attention: mask the scores before the softmax",
        "mask-after-softmax-sdpa": "scaled_dot_product_attention: -1e9 before the softmax",
        "mask-inverted-sdpa": "scaled_dot_product_attention: hidden where mask == 0",
        "mask-tilde-sdpa": "scaled_dot_product_attention: the mask may be 0/1 integers",
        "noscale-sdpa": "scaled_dot_product_attention: scores Q K^T / sqrt(dk)",
        "view-no-transpose-module": "MultiHeadAttention: view(B, T, H, dh).transpose(1, 2)",
        "module-ignores-mask": "MultiHeadAttention: forward(x, mask) attends through sdpa with the mask",
        "module-no-raise": "MultiHeadAttention: embed_dim % num_heads != 0 raises",
        "csa-no-causal-mask": "CausalSelfAttention: causally",
        "csa-view-no-transpose": "CausalSelfAttention: heads split as in multi_head_attention",
        "ffn-no-activation": "FeedForward: ReLU between fc1 and fc2",
        "block-post-norm": "Block: pre-norm",
        "block-no-attn-residual": "Block: x = x + attn(ln1(x))",
        "transformer-positions-not-sliced": "Transformer: positions are 0..T-1",
        "transformer-no-pos-emb": "Transformer: pos_emb on the sum",
        "lm-loss-no-shift": "lm_loss: position t predicts input_ids[:, t+1]",
        "lm-loss-counts-padding": "lm_loss: pad targets are left out of the mean",
        "lm-loss-pad-check-on-inputs": "lm_loss: padding is about targets, not inputs",
        "decode-notebook-argmax": "greedy_decode: the notebook's decode only works for a batch of one",
        "decode-newest-token": "greedy_decode: the whole window, not only the newest token",
        "decode-whole-sequence": "greedy_decode: decode past the context length",
        "decode-with-grad": "greedy_decode: records no gradients",
        "decode-row-0-for-all": "greedy_decode: appends tokens to every row",
        "noscale-mh": "multi_head_attention, causal_multi_head_attention: scale 1/sqrt(dh)",
        "scale-din-self": "self_attention: the scale is 1/sqrt(d_k) (d_k, not d_in)",
        "scale-dk-sdpa": "scaled_dot_product_attention: scores Q K^T / sqrt(dk)",
        "float32-out-sdpa": "all: work in float64",
        "default-heads-8": "multi_head_attention: num_heads=4 by default",
        "default-heads-2-causal": "causal_multi_head_attention: num_heads=4 by default",
        "causal-mh-heads-hardcoded-4": "causal_multi_head_attention: num_heads heads",
        "module-heads-hardcoded-4": "MultiHeadAttention: num_heads heads",
        "csa-heads-hardcoded-4": "CausalSelfAttention: num_heads heads",
        "csa-scale-hidden-size": "CausalSelfAttention: scale 1/sqrt(head width)",
        "merge-no-transpose-mh": "multi_head_attention: heads side by side again, in order",
        "mask-zero-fill-sdpa": "scaled_dot_product_attention: -1e9 where mask == 0",
        "lm-loss-mean-over-padding": "lm_loss: pad targets are left out of the mean",
        "lm-loss-row-0-only": "lm_loss: over the whole batch",
        "mask-ignores-device": "all: never create a tensor on a fixed device (causal_mask's `device`)",
        "cpu-mask-mh": "all: never create a tensor on a fixed device",
        "transformer-positions-on-cpu": "all: never create a tensor on a fixed device (positions)",
        "sdpa-scores-in-place-on-q": "all: leave your inputs unchanged",
        "decode-writes-into-prompt": "all: leave your inputs unchanged",
        "module-extra-param": "all: a module must not have parameters other than those listed",
        "block-one-layernorm-shared": "Block: ln1 and ln2, each its own LayerNorm",
        "block-ln1-twice": "Block: x + ffn(ln2(x))",
        "transformer-tied-weights": "Transformer: lm_head its own nn.Linear",
        "transformer-one-block-repeated": "Transformer: num_layers Blocks",
        "ffn-dropout-after-relu": "FeedForward: dropout on the output",
        "csa-dropout-on-scores": "CausalSelfAttention: attn_dropout on the attention weights (after the softmax)",
        "csa-resid-dropout-before-out-proj": "CausalSelfAttention: resid_dropout after out_proj",
        "transformer-no-embedding-dropout": "Transformer: drop on the sum of the two embeddings",
        "hook-stores-output": "attach_attention_hook: appends the weights",
        "hook-no-detach": "attach_attention_hook: weights.detach()",
        "hook-modifies-output": "attach_attention_hook: must not change the module's outputs",
        "fixed-no-attn-residual": "FixedTransformerEncoderLayer: both residual connections",
        "fixed-no-ffn-residual": "FixedTransformerEncoderLayer: both residual connections",
        "fixed-pre-norm": "FixedTransformerEncoderLayer: post-norm",
    },
    "foundations": {
        "pairs-unweighted": "pair_counts: weighted by the frequency",
        "pairs-wrap-around": "pair_counts: adjacent symbols only",
        "bpe-ties-largest": "learn_bpe: ties go to the smallest pair",
        "bpe-distinct-words": "learn_bpe: count pairs with the words' frequencies",
        "bpe-overlapping-merges": "learn_bpe, apply_bpe: merged left to right without overlaps",
        "apply-by-frequency": "apply_bpe: the merges in the order given (their rank)",
        "apply-empty-word": "apply_bpe: \"\" gives []",
        "wp-frequency-not-score": "wordpiece_scores: the score, not the count",
        "softmax-naive": "softmax: numerically stable (subtract the maximum)",
        "softmax-sum-last-axis": "softmax: along `axis`",
        "sdpa-noscale": "scaled_dot_product_attention: softmax(Q K^T / sqrt(d_k))",
        "sdpa-softmax-over-queries": "scaled_dot_product_attention: over the keys (the last axis)",
        "mh-heads-not-moved": "multi_head_attention: the heads' outputs concatenated in head order",
        "mh-query-weights-for-keys": "multi_head_attention: K = X @ W_k[h].T",
        "mh-scale-dmodel": "multi_head_attention: each head's own scale 1/sqrt(d_k)",
        "ps-notebook-hidden0": "process_sentences: the notebook's cell shifts every layer by one",
        "ps-word-is-hidden0": "process_sentences: hidden_states[0] is not the word embedding",
        "ps-no-eval": "process_sentences: eval mode",
        "ps-sentence-position": "process_sentences: sentence_ix is the index label, not the position",
        "cos-zero-row-nan": "cosine_similarity_matrix: a row of zeros has similarity 0",
        "pca-not-centered": "pca_2d: center each column",
        "pca-components-swapped": "pca_2d: the largest first",
        "am-no-eager": "attention_maps: the sdpa implementation returns no weights",
        "am-no-eval": "attention_maps: eval mode",
        "bh-noscale": "attention_weights_by_hand: scores q k^T / sqrt(dh)",
        "bh-no-mask": "attention_weights_by_hand: padded keys get weight 0 (issue 11's finding)",
        "bh-mask-queries": "attention_weights_by_hand: padded KEYS get weight 0",
        "bh-mask-row-0": "attention_weights_by_hand: attention_mask (B, T), a row each",
        "bh-mask-zero-fill": "attention_weights_by_hand: fill with finfo.min or -inf",
        "bh-view-no-transpose": "attention_weights_by_hand: head i takes features i*dh:(i+1)*dh",
        "labels-before-after-swapped": "token_matching_labels: t - 1 before i, t + 1 after i",
        "labels-or": "token_matching_labels: and",
        "sa-view-no-transpose": "SelfAttention: head i takes features i*dh:(i+1)*dh (issue 11's finding)",
        "sa-merge-no-transpose": "SelfAttention: heads concatenated in order",
        "sa-scale-d": "SelfAttention: softmax(q k^T / sqrt(dh))",
        "sa-no-residual": "SelfAttention: y = norm(h + out(concatenated))",
        "sa-no-positions": "SelfAttention: h = pos(embed(x))",
        "sa-heads-hardcoded-4": "SelfAttention: `heads` heads",
        "sa-features-detached": "SelfAttention, token_matching_training: the grader trains every layer",
        "sa-rule-in-forward": "token_matching_training: a model that solves the task before training gets no points",
    },
    "training": {
        "decay-embeddings": "configure_optimizer: no decay on embeddings (not every 2-D parameter)",
        "decay-on-biases": "configure_optimizer: weight decay on the nn.Linear weights only",
        "warmup-off-by-one": "lr_at: max_lr * (step + 1) / warmup_steps",
        "lr-no-floor": "lr_at: the cosine decays to min_lr",
        "clip-after-step": "train_step: clip before optimizer.step()",
        "clip-before-backward": "train_step: clip after backward",
        "lr-set-after-step": "train_step: lr_at(step) set before optimizer.step()",
        "step-returns-tensor": "train_step: the loss as a float",
        "eval-mode-not-restored": "evaluate: restore the previous mode",
        "eval-counts-padding": "evaluate: only non-padding targets count",
        "eval-perplexity-of-sum": "evaluate: perplexity = exp(mean loss)",
        "overfit-no-optimizer-step": "overfit_one_batch: the loss must fall",
        "overfit-steps-off-by-one": "overfit_one_batch: `steps` losses",
        "sample-global-rng": "sample: draw with the generator",
        "sample-whole-sequence": "sample: the window rule of greedy_decode",
        "sample-with-grad": "sample: without recording gradients",
        "tokenize-no-truncation": "tokenize_batch: cut to max_length tokens (truncation=True)",
        "tokenize-no-padding": "tokenize_batch: padded to exactly max_length tokens",
        "metrics-argmax-axis-0": "compute_metrics: the argmax over the classes",
        "args-no-eval-strategy": "training_arguments: eval_strategy=\"epoch\"",
        "fine-tune-no-compute-metrics": "fine_tune: a Trainer with compute_metrics",
        "cls-no-zero-grad": "train: zero the gradients for each batch",
        "cls-train-mean-of-batch-losses": "train: the mean loss over the epoch's examples",
        "cls-eval-mean-of-batch-accuracies": "evaluate_classifier: correct predictions over all examples",
        "cls-eval-mode-not-restored": "evaluate_classifier: restore the previous mode",
    },
}


def problems_run(manifest, mutant) -> set[str]:
    """The problems whose public tests a mutant runs: its own (a wrong variant), or those of the
    files it changes (a correct variant, which must pass them all)."""
    if mutant.problems:
        return set(mutant.problems)
    files = {e.file for e in mutant.edits} | {name for name, _ in mutant.files}
    return {name for name, problem in manifest.problems.items() if problem.file in files}


def public_failures(assignment: str, names: list[str]) -> dict[str, dict[str, bool]]:
    """{mutant: {problem: some public test of it failed}} for the catalogued mutants `names`,
    each run on the public tests of `problems_run` only."""
    from autograder import manifest as manifest_module
    from autograder import catalogue as catalogue_module

    manifest = manifest_module.load(assignment)
    catalogue = {m.name: m for m in catalogue_module.load(manifest)[0]}
    with tempfile.TemporaryDirectory(prefix="public-audit-") as tmp:
        tmp = pathlib.Path(tmp)
        pairs = [f"{name}={catalogue_module.materialise(manifest, [catalogue[name]], tmp / f'm{i}')}"
                 for i, name in enumerate(names)]
        tests = _child("public", assignment, tmp, pairs)
        result = {}
        for name in names:
            outcomes = _outcomes(tmp / f"{name}.jsonl")
            result[name] = {problem: any(not outcomes.get(t["nodeid"], True) for t in tests
                                         if problem in t["problems"])
                            for problem in problems_run(manifest, catalogue[name])}
    return result


def _outcomes(report: pathlib.Path) -> dict[str, bool]:
    """{nodeid: passed} from a plugin report."""
    events = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {e["nodeid"]: e["outcome"] == "passed" for e in events if e["event"] == "result"}


def _child(mode: str, assignment: str, workdir: pathlib.Path, rest: list[str]) -> list[dict]:
    """Run this file as the child (one process, torch imported once); the public tests collected."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "AUTOGRADER"))}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, __file__, mode, assignment, str(workdir), *rest], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((workdir / "collected.json").read_text(encoding="utf-8"))


def _pytest_args(assignment: str, report: pathlib.Path, submission: str) -> list[str]:
    """The public tests as `make public` runs them, with a report of every event."""
    return [str(ROOT / "tests_public" / assignment), "-p", "autograder.kit.plugin", "-p", "no:cacheprovider",
            "-p", "no:logging", "-c", os.devnull, "--rootdir", str(ROOT), "--confcutdir", str(ROOT),
            "-q", "--no-header", "-rN",
            "-p", "no:xdist", "--timeout", "120", "--submission", submission, "--report", str(report),
            *_budgets(assignment)]


def _budgets(assignment: str) -> list[str]:
    """--budgets, as run_tests.py passes them (problems.json)."""
    from autograder import manifest as manifest_module

    budgets = manifest_module.load(assignment).budgets
    return ["--budgets", json.dumps(budgets)] if budgets else []


def main(argv: list[str]) -> int:
    """The child. `public ASSIGNMENT WORKDIR NAME=FOLDER ...`: each mutant on the public tests
    of its problems (WORKDIR/NAME.jsonl); `record ASSIGNMENT WORKDIR`: the reference on every
    public test, with the Recorder (WORKDIR/features.json). Both write WORKDIR/collected.json."""
    mode, assignment, workdir, *pairs = argv
    workdir = pathlib.Path(workdir)
    from autograder import catalogue as catalogue_module
    from autograder import impact
    from autograder import manifest as manifest_module
    from autograder.kit import adapter

    manifest = manifest_module.load(assignment)
    reference = str(manifest.path(manifest.reference))
    collect = workdir / "collect.jsonl"
    pytest.main([*_pytest_args(assignment, collect, reference), "--collect-only"])
    tests = next(json.loads(line)["tests"] for line in collect.read_text(encoding="utf-8").splitlines()
                 if json.loads(line)["event"] == "collected")
    (workdir / "collected.json").write_text(json.dumps(tests), encoding="utf-8")
    if mode == "record":
        recorder = Recorder()
        adapter.call_listeners.append(recorder.listen)
        pytest.main(_pytest_args(assignment, workdir / "reference.jsonl", reference), plugins=[recorder])
        (workdir / "features.json").write_text(json.dumps(
            {nodeid: {"features": sorted(found), "calls": recorder.calls[nodeid]}
             for nodeid, found in recorder.features.items()}), encoding="utf-8")
        return 0
    catalogue = {m.name: m for m in catalogue_module.load(manifest)[0]}
    # A test that runs no changed function passes as on the reference (autograder/impact.py):
    # record which functions each public test runs on a copy of the reference, once.
    copy = catalogue_module.materialise(manifest, [], workdir / "reference-copy")
    recorder = impact.CallRecorder(copy)
    pytest.main(_pytest_args(assignment, workdir / "reference.jsonl", str(copy)), plugins=[recorder])
    records = recorder.records()
    for pair in pairs:
        name, folder = pair.split("=", 1)
        chosen = [t["nodeid"] for t in tests if set(t["problems"]) & problems_run(manifest, catalogue[name])]
        functions, whole = impact.changes(copy, pathlib.Path(folder), manifest.submission_files)
        if not whole:
            chosen = [n for n in impact.tests_running(records, functions) if n in chosen]
        (workdir / f"{name}.jsonl").touch()
        if chosen:
            only = workdir / f"{name}.only"
            only.write_text("\n".join(chosen), encoding="utf-8")
            pytest.main([*_pytest_args(assignment, workdir / f"{name}.jsonl", folder), "--only", str(only)])
    return 0


# ---------------------------------------------------------------------------------------------
# The tests.
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=ASSIGNMENTS)
def recorded(request, tmp_path_factory):
    """(collected public tests, {nodeid: {features, calls}}, {nodeid: passed}) on the reference."""
    workdir = tmp_path_factory.mktemp(f"record-{request.param}")
    tests = _child("record", request.param, workdir, [])
    features = json.loads((workdir / "features.json").read_text(encoding="utf-8"))
    return tests, features, _outcomes(workdir / "reference.jsonl")


def test_public_tests_give_the_inputs_they_claim(recorded):
    tests, features, passed = recorded
    assert tests and all(passed.get(t["nodeid"]) for t in tests), "the reference fails a public test"
    silent = [t["nodeid"] for t in tests if not features.get(t["nodeid"], {}).get("calls")]
    assert silent == [], "the recorder saw no call into student code in these tests"
    assert unsupported_claims(tests, {k: v["features"] for k, v in features.items()}) == []


def test_claims_audit_catches_a_padding_claim_without_padding():
    """The audit fails for the issue's own example: a 'padded batch' whose mask is all ones."""
    import torch

    test = {"nodeid": "t", "name": "test_by_hand", "doc": "a padded batch of two sentences",
            "problems": ["attention_weights_by_hand"]}
    ones = {"hidden_states": torch.zeros(2, 9, 4), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    padded = dict(ones, attention_mask=torch.tensor([[1] * 9, [1] * 7 + [0] * 2]))
    assert claims_of(test) == {"padding", "batch"}
    assert unsupported_claims([test], {"t": features_of("attention_weights_by_hand", ones)}) == [
        "t: claims padding, but no call shows " + dict((f, w) for f, _, w in CLAIMS)["padding"]]
    assert unsupported_claims([test], {"t": features_of("attention_weights_by_hand", padded)}) == []


def test_claims_table_reads_each_feature():
    """Each claim's evidence: present on a call that shows it, absent on one that does not."""
    import numpy as np
    import torch

    assert "padding" in features_of("lm_loss", {"input_ids": torch.tensor([[1, 2, 5]]), "pad_token_id": 5})
    assert "padding" not in features_of("lm_loss", {"input_ids": torch.tensor([[5, 2, 3]]), "pad_token_id": 5})
    assert "heads" in features_of("MultiHeadAttention", {"embed_dim": 8, "num_heads": 2})
    assert "heads" not in features_of("multi_head_attention", {"S": torch.zeros(2, 3, 8), "num_heads": 1})
    assert "heads" in features_of("multi_head_attention", {"X": np.zeros((3, 8)), "W_q": np.zeros((2, 4, 8))})
    assert {"batch", "tokens"} <= features_of("f", {"x": torch.zeros(2, 3, 8)})
    assert not {"batch", "tokens"} & features_of("f", {"x": torch.zeros(1, 1, 8)})
    assert "batch" in features_of("greedy_decode", {"input_ids": torch.zeros(2, 1, dtype=torch.long)})
    assert "tokens" not in features_of("greedy_decode", {"input_ids": torch.zeros(2, 1, dtype=torch.long)})
    assert "non_square" in features_of("sdpa", {"Q": torch.zeros(1, 2, 4), "K": torch.zeros(1, 3, 4)})
    # training's train_step(model, batch, ..., pad_token_id) and evaluate(model, loader, pad_token_id)
    assert {"batch", "padding"} <= features_of("train_step", {"batch": torch.tensor([[1, 2, 0], [3, 4, 5]]),
                                                              "pad_token_id": 0})
    assert {"batch", "padding"} <= features_of("evaluate", {"loader": [torch.tensor([[1, 2], [3, 4]]),
                                                                       torch.tensor([[1, 0]])], "pad_token_id": 0})
    one_row = {"loader": [torch.tensor([[0, 2, 3]])], "pad_token_id": 0}   # padding only where no target is
    assert not {"batch", "padding"} & features_of("evaluate", one_row)
    assert claims_of({"name": "test_causal_mask_3", "doc": "causal_mask(3) is lower-triangular",
                      "problems": ["causal_mask"]}) == set()


@pytest.mark.parametrize("assignment", [a for a in ASSIGNMENTS if PITFALL_MUTANTS[a]])
def test_public_tests_catch_the_handouts_pitfalls(assignment):
    from autograder import manifest as manifest_module
    from autograder import catalogue as catalogue_module

    catalogue = {m.name: m for m in catalogue_module.load(manifest_module.load(assignment))[0]}
    names = list(PITFALL_MUTANTS[assignment])
    assert set(names) <= set(catalogue) and not any(catalogue[n].correct for n in names)
    caught = public_failures(assignment, names)
    missed = [f"{name} ({PITFALL_MUTANTS[assignment][name]}): no public test of {problem} fails"
              for name, problems in caught.items() for problem, failed in problems.items() if not failed]
    assert missed == []


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_correct_variants_pass_the_public_tests(assignment):
    """Every catalogued correct variant (another style) passes the public tests of the files it changes,
    run as a student runs them (no reference parts substituted)."""
    from autograder import manifest as manifest_module
    from autograder import catalogue as catalogue_module

    names = [m.name for m in catalogue_module.load(manifest_module.load(assignment))[0] if m.correct]
    ran = public_failures(assignment, names)
    assert names and all(ran.values()), "a correct variant ran no public test"
    failed = {name: sorted(p for p, bad in problems.items() if bad) for name, problems in ran.items()}
    assert {name: bad for name, bad in failed.items() if bad} == {}


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
