"""The movie-reviews data of the `training` assignment's classifier (the debugging practical's
Parts A and B), read the way the course notebook reads NLTK's `movie_reviews`.

`load_reviews(root=None)` gives an NLTK `CategorizedPlaintextCorpusReader` (categories `pos` and
`neg`, one review per file): NLTK's own `nltk.corpus.movie_reviews`, unchanged, when that corpus is
installed and no `root` is given; else the small corpus shipped in `data/reviews/` (made by
`data/make_reviews.py`, whose docstring says how and why: its labels depend on word order, so
counting words is not enough). The tests always pass `root=LOCAL_ROOT`, so grading reads the same
data on every machine.

`documents`, `Vocab` and `tokenize` are the notebook's pipeline (a seeded shuffle instead of the
global one); `review_tensors` turns a corpus into id tensors and labels, split in train and test,
and `batches` cuts tensors into a loader: a list of `(ids, labels)` batches, as a `DataLoader`
yields them.
"""
from __future__ import annotations

import functools
import pathlib
import random

import torch

LOCAL_ROOT = pathlib.Path(__file__).resolve().parent / "data" / "reviews"
FILEIDS = r"(?!\.).*\.txt"      # nltk.corpus.movie_reviews' arguments
CAT_PATTERN = r"(neg|pos)/.*"
PAD, UNK = "<PAD>", "<UNK>"


def _installed_movie_reviews():
    """nltk.corpus.movie_reviews when NLTK finds the corpus on nltk.data.path, else None."""
    import nltk

    try:
        nltk.data.find("corpora/movie_reviews")
    except LookupError:
        return None
    from nltk.corpus import movie_reviews

    return movie_reviews


def load_reviews(root: str | pathlib.Path | None = None):
    """A categorised corpus of reviews (`pos`/`neg`): NLTK's movie_reviews when it is installed and
    `root` is None, else the plain-text files under `root` (default: the shipped corpus). NLTK reads
    only below the folders of `nltk.data.path`: `root` is added to it."""
    import nltk
    from nltk.corpus.reader import CategorizedPlaintextCorpusReader

    if root is None:
        installed = _installed_movie_reviews()
        if installed is not None:
            return installed
        root = LOCAL_ROOT
    root = str(pathlib.Path(root).resolve())
    if root not in nltk.data.path:
        nltk.data.path.append(root)
    return CategorizedPlaintextCorpusReader(root, FILEIDS, cat_pattern=CAT_PATTERN, encoding="ascii")


def documents(corpus, seed: int = 42) -> list[tuple[list[str], str]]:
    """The notebook's get_nltk_data: (words, category) for every review, shuffled (with `seed`)."""
    docs = [(list(corpus.words(fileid)), category)
            for category in corpus.categories() for fileid in corpus.fileids(category)]
    random.Random(seed).shuffle(docs)
    return docs


class Vocab:
    """The notebook's vocabulary: the `size` most frequent lower-cased words from id 2 on; 0 pads, 1 is unknown."""

    def __init__(self, docs: list[tuple[list[str], str]], size: int = 3000):
        import nltk

        freq = nltk.FreqDist(w.lower() for doc, _ in docs for w in doc)
        self.vocab = {word: i + 2 for i, (word, _) in enumerate(freq.most_common(size))}
        self.vocab[PAD] = 0
        self.vocab[UNK] = 1

    def __len__(self) -> int:
        return len(self.vocab)

    def tokenize(self, doc: list[str], max_len: int = 100) -> torch.Tensor:
        """The ids of the first `max_len` words, padded with 0 to `max_len` (int64)."""
        ids = [self.vocab.get(w.lower(), self.vocab[UNK]) for w in doc][:max_len]
        return torch.tensor(ids + [self.vocab[PAD]] * (max_len - len(ids)), dtype=torch.long)


@functools.lru_cache(maxsize=4)
def review_tensors(root: str | None = None, *, train_size: int = 480, max_len: int = 16, seed: int = 42) -> dict:
    """The corpus as tensors: {"train": (ids, labels), "test": (ids, labels), "vocab_size": n}, ids
    (N, max_len) int64 padded with 0, labels 1 for `pos` and 0 for `neg`; the first `train_size`
    shuffled reviews train, the rest test (the notebook's split). Cached: do not change the tensors."""
    docs = documents(load_reviews(root), seed)
    vocab = Vocab(docs)

    def encode(part):
        return (torch.stack([vocab.tokenize(doc, max_len) for doc, _ in part]),
                torch.tensor([1 if category == "pos" else 0 for _, category in part], dtype=torch.long))

    return {"train": encode(docs[:train_size]), "test": encode(docs[train_size:]), "vocab_size": len(vocab)}


def batches(ids: torch.Tensor, labels: torch.Tensor, batch_size: int, *, device="cpu",
            seed: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A loader as a list: `(ids, labels)` batches of `batch_size` (the last one smaller when it does
    not divide), in order, or shuffled with `seed`; on `device`."""
    if seed is None:
        order = torch.arange(len(ids))
    else:
        order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
    return [(ids[chunk].to(device), labels[chunk].to(device)) for chunk in order.split(batch_size)]


def bag_of_words_accuracy(data: dict, *, seed: int = 0, steps: int = 300, lr: float = 0.05) -> tuple[float, float]:
    """A bag-of-words baseline on `review_tensors`' split: logistic regression (a linear layer and
    cross-entropy, full-batch Adam for `steps` steps) on each review's word counts; returns its
    (train, test) accuracy. On the shipped corpus it stays far below what the attention classifier
    reaches: counted words do not tell a negated adjective from a plain one."""
    def counts(ids):
        table = torch.zeros(len(ids), data["vocab_size"])
        table.scatter_add_(1, ids, torch.ones(ids.shape))
        table[:, 0] = 0.0  # padding is not a word
        return table

    (train_ids, train_labels), (test_ids, test_labels) = data["train"], data["test"]
    x_train, x_test = counts(train_ids), counts(test_ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        linear = torch.nn.Linear(data["vocab_size"], 2)
    optimizer = torch.optim.Adam(linear.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(linear(x_train), train_labels).backward()
        optimizer.step()
    with torch.no_grad():
        return tuple((linear(x).argmax(dim=-1) == y).float().mean().item()
                     for x, y in ((x_train, train_labels), (x_test, test_labels)))
