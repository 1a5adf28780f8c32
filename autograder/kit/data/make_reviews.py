"""Write the small movie-reviews corpus of autograder/kit/data/reviews/ (the `training` assignment's
classifier data), laid out like NLTK's `movie_reviews`: `pos/cvNNN_SSSSS.txt` and `neg/...`, one
review per file, lower-case, words and punctuation separated by spaces; 300 reviews per class,
about 40 KB.

Run `python autograder/kit/data/make_reviews.py [FOLDER]` to write it again: the same bytes every
time (a fixed seed, Python's `random` only; tests/test_reviews.py checks it). NLTK's real corpus
cannot be downloaded here; this one is made so that a classifier must combine words, not only
count them:

- every review has two sentences, in either order: an evaluative one (a noun and one of 8
  sentiment adjectives: "the plot was dull .") and a neutral one, drawn from the same templates
  for both classes;
- in 35% of the reviews the adjective is negated, "not" right before it ("the plot was not
  dull ."); "not" appears nowhere else;
- the label is the adjective's polarity, flipped when it is negated.

The label is the exclusive or of two things a bag of words sees (a positive adjective, a "not"),
which no linear function of the word counts computes: logistic regression on the counts learns the
adjective's polarity and gets the negated reviews wrong (0.62 on the training reviews, 0.68 on the
validation ones, see `reviews.bag_of_words_accuracy`), while the attention classifier, whose
adjective attends to the "not" before it, reaches 0.93 to 1.0 in 12 epochs
(benchmarks/training_seeds.py).
"""
from __future__ import annotations

import pathlib
import random

SEED = 2026
PER_CLASS = 300
NEGATED = 0.35  # the share of reviews whose adjective is negated
HERE = pathlib.Path(__file__).resolve().parent / "reviews"

NOUNS = ["film", "movie", "plot", "acting", "script", "cast", "story", "ending", "direction", "soundtrack",
         "pacing", "dialogue", "humour", "photography"]
POSITIVE = ["good", "great", "excellent", "wonderful"]
NEGATIVE = ["bad", "awful", "boring", "dull"]
# {neg} is "not " or nothing; {noun} a noun
EVALUATIVE = ["the {noun} was {neg}{adj} .", "i found the {noun} {neg}{adj} .", "this {noun} is {neg}{adj} .",
              "overall the {noun} felt {neg}{adj} .", "to me the {noun} seemed {neg}{adj} ."]
NEUTRAL = ["i had {neg}seen the trailer before .", "the {noun} did {neg}run long .",
           "my friend was {neg}there with me .", "we did {neg}stay for the credits .",
           "it was {neg}shown in many theaters .", "the studio had {neg}planned a sequel .",
           "i did {neg}read the book first .", "the {noun} was {neg}changed for the release .",
           "we were {neg}expecting a comedy .", "the premiere was {neg}in this city ."]


def review(rng: random.Random, positive: bool) -> str:
    """One review of the given class: the evaluative sentence and a neutral one, in either order."""
    negated = rng.random() < NEGATED
    adjective_positive = positive != negated  # the label is the polarity, flipped by a negation
    adjective = rng.choice(POSITIVE if adjective_positive else NEGATIVE)
    sentences = [rng.choice(NEUTRAL).format(noun=rng.choice(NOUNS), neg="")]
    evaluative = rng.choice(EVALUATIVE).format(noun=rng.choice(NOUNS), adj=adjective, neg="not " if negated else "")
    sentences.insert(rng.randrange(len(sentences) + 1), evaluative)
    return " ".join(sentences) + "\n"


def main(out: pathlib.Path = HERE) -> None:
    """Write the corpus under `out` (its pos/ and neg/ folders are emptied first)."""
    rng = random.Random(SEED)
    for category in ("pos", "neg"):
        folder = out / category
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.txt"):
            old.unlink()
    for index in range(2 * PER_CLASS):  # the classes interleaved, so a prefix of the files is balanced
        category = "pos" if index % 2 == 0 else "neg"
        text = review(rng, category == "pos")
        (out / category / f"cv{index // 2:03d}_{rng.randrange(100000):05d}.txt").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    import sys

    main(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
