"""Red-team `redslow`: correct submissions written the slow way real students write them (loops by
hand, one example at a time, helpers called once per item) keep full marks within the time budget
of `foundations` and `training`; see each test for what was unfair before."""
import importlib.util
import pathlib

import pytest
import torch

from autograder.grade import grade
from autograder.grade.results import per_problem
from autograder.kit import adapter, messages
from autograder.kit.training import Budget, fit_student_model

ROOT = pathlib.Path(__file__).resolve().parent.parent

# the `remote` fixture's student.py: a model the grader's training loop (kit/training.py's fit_by_name,
# run in the worker) cannot train
SUBMISSION = '''
import torch

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)

    def forward(self, x):
        if x.size(0) == 4:   # the grader's training batches
            raise ValueError("this forward fails in training")
        return self.lin(x).squeeze(-1)
'''

# evaluate_classifier one example at a time: correct (the same accuracy, eval mode, no gradients)
PER_EXAMPLE_EVALUATION = (
    "            logits, _ = model(ids)\n"
    "            correct += (logits.argmax(dim=-1) == labels).sum().item()\n"
    "            total += labels.size(0)\n",
    "            for i in range(ids.size(0)):\n"
    "                logits, _ = model(ids[i:i + 1])\n"
    "                correct += int(logits.argmax(dim=-1).item() == labels[i].item())\n"
    "                total += 1\n")


def _load(path: pathlib.Path, name: str):
    """A module from a file, outside any package (the hidden tests and the reference are such files)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluating_one_example_at_a_time_costs_train_classifier_nothing(tmp_path):
    """train_classifier's history test read the model's calls as batches of exactly 7, 7, 3 then 5, 4: a
    correct evaluate_classifier run one example at a time cost train_classifier 0.75 of its points
    (77.25 / 78). The validation examples may now come in batches of any size."""
    submission = tmp_path / "s"
    submission.mkdir()
    for source in (ROOT / "reference" / "training").glob("*.py"):
        (submission / source.name).write_text(source.read_text())
    classifier = submission / "classifier.py"
    text = classifier.read_text()
    assert text.count(PER_EXAMPLE_EVALUATION[0]) == 1
    classifier.write_text(text.replace(*PER_EXAMPLE_EVALUATION))
    scores = per_problem(grade("training", submission))
    assert scores["evaluate_classifier"][0] == scores["evaluate_classifier"][1]
    assert scores["train_classifier"][0] == scores["train_classifier"][1], scores["train_classifier"]


class _Namespace:
    """`student` / `reference` as the hidden tests use them: `.tokenization.<function>`."""

    def __init__(self, tokenization):
        self.tokenization = tokenization


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")  # the hidden tests' own markers
def test_learn_bpe_library_corpora_cost_few_calls_into_an_isolated_pair_counts(monkeypatch):
    """The library test isolates pair_counts: each call of the student's into it is a round trip to the
    grader (about 70 us here, four times that on Gradescope's 0.5 vCPU). A correct learn_bpe that keeps
    every word occurrence and calls pair_counts once per occurrence made 424,000 such calls on the
    old corpora (35,323 words) and timed out at 30 s; it makes 34,000 on the new ones."""
    monkeypatch.syspath_prepend(str(ROOT / "tests_hidden" / "foundations"))
    hidden = _load(ROOT / "tests_hidden" / "foundations" / "test_tokenization_hidden.py", "redslow_hidden_tok")
    reference = _load(ROOT / "reference" / "foundations" / "tokenization.py", "redslow_reference_tok")
    calls = []

    class PerOccurrence:
        """The slow student: pair_counts once per word occurrence, after every merge."""

        @staticmethod
        def learn_bpe(corpus, num_merges):
            words, merges = [tuple(w) for w in corpus.split()], []
            for _ in range(num_merges):
                counts = {}
                for w in words:
                    calls.append(w)
                    for pair, n in reference.pair_counts({w: 1}).items():
                        counts[pair] = counts.get(pair, 0) + n
                if not counts:
                    break
                best = max(counts.values())
                pair = min(p for p, c in counts.items() if c == best)
                merges.append(pair)
                words = [reference._merge(w, pair) for w in words]
            return merges

    hidden.test_learn_bpe_agrees_with_the_library(_Namespace(PerOccurrence), _Namespace(reference))
    assert len(calls) < 60_000, len(calls)


def test_a_hanging_evaluate_classifier_leaves_train_classifiers_floor_test(tmp_path, copy_root):
    """train_classifier's history tests call the student's evaluate_classifier: one that hangs spends their
    problem's timeouts (fair: its history needs the accuracies). The floor test calls only `train`; it ran
    after them and was not run (0.75 of train_classifier's points lost to evaluate_classifier's hang, 148 s
    of grading). It now runs before them, and passes."""
    root = copy_root(tmp_path / "root", "training", test_timeout_s=10, watchdog_grace_s=1)
    submission = tmp_path / "s"
    submission.mkdir()
    for source in (ROOT / "reference" / "training").glob("*.py"):
        (submission / source.name).write_text(source.read_text())
    classifier = submission / "classifier.py"
    hang = "    was_training = model.training\n    model.eval()\n    correct, total = 0, 0\n"
    text = classifier.read_text()
    assert text.count(hang) == 1
    classifier.write_text(text.replace(hang, "    while True:\n        pass\n" + hang))
    results = grade("training", submission, root=root)
    scores = per_problem(results)
    assert {p for p, (score, total) in scores.items() if score < total} == {"evaluate_classifier", "train_classifier"}
    floor = [t for t in results["tests"] if "makes the classifier reach a validation accuracy" in t["name"]]
    assert len(floor) == 1 and floor[0]["status"] == "passed", floor
    assert results["execution_time"] < 480 / 2


def test_a_failure_in_the_graders_loop_in_the_worker_names_that_loop(remote):
    """token_matching_training trains the student's SelfAttention with the grader's loop, in the worker. A
    correct SelfAttention that loops over the sequences of a batch timed out there, and the message named
    `SelfAttention.forward(int64[1000, 10])` as the last call: the model's first call, which had returned
    long before. It now names the grader's loop, and says that it calls the student's code at every step."""
    adapter.reset_last_call()
    model = remote.student.Tiny()
    model(torch.zeros(2, 3))
    assert "Tiny.forward" in adapter.last_call_shown()
    with pytest.raises(Exception, match="this forward fails in training"):
        fit_student_model(remote, model, torch.zeros(8, 3), torch.zeros(8), "bce_with_logits",
                          Budget(epochs=1, batch_size=4))
    shown = adapter.last_call_shown()
    assert shown == messages.KIT_CALL.format(call="fit_by_name(Tiny)"), shown
