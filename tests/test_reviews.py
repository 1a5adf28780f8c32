"""The reviews corpus of the `training` assignment's classifier (autograder/kit/reviews.py and
kit/data/): read with NLTK's own reader, NLTK's real movie_reviews used when installed, the shipped
files as their script writes them, and the property the tests rely on: a bag of words stays below the
accuracy floor, the reference's attention classifier clears it with margin."""
import ast
import contextlib
import importlib.util
import pathlib
import sys

import nltk
import pytest
import torch

from autograder.kit import reviews

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _module(path: pathlib.Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def one_thread():
    """Train on one thread, as the grader's workers do (two pytest workers on two cores, each with a pool of
    threads, take a hundred times longer)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _constants(path: pathlib.Path) -> dict:
    """A test file's module-level constants (NAME = literal), read without importing it."""
    found = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


@pytest.fixture(scope="module")
def floors():
    """The floor and learning rate of the public and the hidden test (they must agree), and the
    CPU's epochs (the manifest's [budgets] classifier_epochs, which both tests read)."""
    from autograder import manifest as manifest_module

    public = _constants(ROOT / "tests_public/training/test_classifier.py")
    hidden = _constants(ROOT / "tests_hidden/training/test_classifier_hidden.py")
    keys = ("FLOOR", "LR")
    assert [public[k] for k in keys] == [hidden[k] for k in keys]
    epochs = manifest_module.load("training").budgets["classifier_epochs"]["cpu"]
    return public["FLOOR"], epochs, public["LR"]


def _write_corpus(root: pathlib.Path, texts: dict) -> None:
    for name, text in texts.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="ascii")


def test_local_corpus_is_read_with_nltk_categorized_reader():
    corpus = reviews.load_reviews(reviews.LOCAL_ROOT)
    assert type(corpus).__name__ == "CategorizedPlaintextCorpusReader"
    assert corpus.categories() == ["neg", "pos"]
    assert len(corpus.fileids("pos")) == len(corpus.fileids("neg")) == 300
    assert all(f.startswith(("pos/", "neg/")) and f.endswith(".txt") for f in corpus.fileids())
    words = corpus.words(corpus.fileids("pos")[0])
    assert len(words) > 5 and all(w == w.lower() for w in words)
    size = sum(p.stat().st_size for p in reviews.LOCAL_ROOT.rglob("*.txt"))
    assert size < 200_000, size


def test_corpus_files_are_what_the_script_writes(tmp_path):
    """the shipped corpus is exactly make_reviews.py's output (deterministic, nothing edited by hand)"""
    script = _module(ROOT / "autograder/kit/data/make_reviews.py", "make_reviews")
    script.main(tmp_path)
    made = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in tmp_path.rglob("*.txt")}
    shipped = {p.relative_to(reviews.LOCAL_ROOT).as_posix(): p.read_bytes() for p in reviews.LOCAL_ROOT.rglob("*.txt")}
    assert made == shipped


def test_without_nltk_movie_reviews_the_local_corpus_is_read(monkeypatch, tmp_path):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty_nltk_data")])
    corpus = reviews.load_reviews()
    assert pathlib.Path(str(corpus.root)) == reviews.LOCAL_ROOT
    assert len(corpus.fileids()) == 600


def test_installed_movie_reviews_is_used_unchanged(monkeypatch, tmp_path):
    """a corpus at nltk_data/corpora/movie_reviews on nltk.data.path: load_reviews() is nltk.corpus.movie_reviews"""
    data = tmp_path / "nltk_data"
    _write_corpus(data / "corpora/movie_reviews", {"pos/cv000_1.txt": "a fine film .\n",
                                                   "pos/cv001_2.txt": "great acting .\n",
                                                   "neg/cv000_3.txt": "a dull plot .\n"})
    monkeypatch.setattr(nltk.data, "path", [str(data)])
    # a fresh lazy loader, as `from nltk.corpus import movie_reviews` gives in a new process
    fresh = nltk.corpus.util.LazyCorpusLoader("movie_reviews", nltk.corpus.reader.CategorizedPlaintextCorpusReader,
                                              r"(?!\.).*\.txt", cat_pattern=r"(neg|pos)/.*", encoding="ascii")
    monkeypatch.setattr(nltk.corpus, "movie_reviews", fresh)
    corpus = reviews.load_reviews()
    assert corpus is fresh
    assert corpus.categories() == ["neg", "pos"]
    assert corpus.fileids("pos") == ["pos/cv000_1.txt", "pos/cv001_2.txt"]
    assert list(corpus.words("neg/cv000_3.txt")) == ["a", "dull", "plot", "."]
    # a root given explicitly wins over the installed corpus (the tests always give one)
    assert len(reviews.load_reviews(reviews.LOCAL_ROOT).fileids()) == 600


def test_review_tensors_split_and_padding():
    data = reviews.review_tensors(str(reviews.LOCAL_ROOT))
    (train_ids, train_labels), (test_ids, test_labels) = data["train"], data["test"]
    assert train_ids.shape == (480, 16) and test_ids.shape == (120, 16)
    assert train_ids.dtype == torch.long and set(train_labels.tolist()) == {0, 1}
    assert int(train_ids.max()) < data["vocab_size"] and (train_ids == 0).any()   # padded
    assert not (train_ids == 1).any()   # every word is in the vocabulary
    loader = reviews.batches(test_ids, test_labels, 50)
    assert [len(y) for _, y in loader] == [50, 50, 20]


def test_bag_of_words_stays_below_the_floor(floors):
    """logistic regression on word counts: far below the floor, on the test split and even on the training split"""
    floor, _, _ = floors
    data = reviews.review_tensors(str(reviews.LOCAL_ROOT))
    for seed in range(3):
        train_accuracy, test_accuracy = reviews.bag_of_words_accuracy(data, seed=seed)
        assert test_accuracy < floor - 0.1, (seed, test_accuracy)
        assert train_accuracy < floor - 0.1, (seed, train_accuracy)


@pytest.mark.parametrize("seed", [0, 7, 13])
def test_reference_classifier_clears_the_floor(floors, seed, monkeypatch):
    """the reference, as the hidden test trains it (CPU budget), clears the floor with margin on other seeds"""
    floor, epochs, lr = floors
    monkeypatch.syspath_prepend(str(ROOT / "reference/training"))
    sys.modules.pop("classifier", None)
    import classifier

    try:
        data = reviews.review_tensors(str(reviews.LOCAL_ROOT))
        config = {"vocab_size": data["vocab_size"], "embed_dim": 32, "num_heads": 4, "ffn_dim": 64, "dropout": 0.1}
        model = classifier.build_classifier(config, seed=seed)
        classifier.seed_everything(seed)
        optimizer, criterion = classifier.plain_adam(model, lr=lr), classifier.cross_entropy()
        loader = reviews.batches(*data["train"], 32, seed=seed)
        for _ in range(epochs):
            classifier.train(model, loader, optimizer, criterion)
        accuracy = classifier.evaluate_classifier(model, reviews.batches(*data["test"], 64))
    finally:
        sys.modules.pop("classifier", None)
    assert accuracy >= floor + 0.05, accuracy
