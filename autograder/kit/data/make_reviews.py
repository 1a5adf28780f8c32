"""Write the small movie-reviews corpus of autograder/kit/data/reviews/ (the `training` assignment's
classifier data), laid out like NLTK's `movie_reviews`: `pos/cvNNN_SSSSS.txt` and `neg/...`, one
review per file, lower-case, words and punctuation separated by spaces.

Run `python autograder/kit/data/make_reviews.py` to write it again: the same bytes every time (a
fixed seed, Python's `random` only). NLTK's real corpus cannot be downloaded here; this one is
made so that a classifier must read word order, not only count words:

- every review has one evaluative sentence (a noun and a sentiment adjective: "the plot was
  dull .") among 2 to 4 neutral sentences, and exactly one "not";
- the "not" either negates the adjective, directly before it ("the plot was not dull ."), or
  sits in a neutral sentence ("we did not stay for the credits .");
- the label is the adjective's polarity, flipped when it is negated.

So the words of a review, counted, say nothing about its label: the adjective's polarity is
positive or negative with the same probability in both classes, and every review holds one
"not" and draws its neutral sentences from the same templates. A bag-of-words classifier stays
at chance; a model that sees that "not" stands right before the adjective reads the label.
"""
from __future__ import annotations

import pathlib
import random

SEED = 2026
PER_CLASS = 300
NEGATED = 0.3  # the share of reviews whose adjective is negated
HERE = pathlib.Path(__file__).resolve().parent / "reviews"

NOUNS = ["film", "movie", "plot", "acting", "script", "cast", "story", "ending", "direction", "soundtrack",
         "pacing", "dialogue", "humour", "photography"]
POSITIVE = ["good", "great", "excellent", "wonderful", "brilliant", "superb", "enjoyable", "clever"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "weak", "clumsy", "tedious"]
# {neg} is "not " or nothing; {noun} a noun
EVALUATIVE = ["the {noun} was {neg}{adj} .", "i found the {noun} {neg}{adj} .", "this {noun} is {neg}{adj} .",
              "overall the {noun} felt {neg}{adj} .", "to me the {noun} seemed {neg}{adj} ."]
NEUTRAL = ["i had {neg}seen the trailer before .", "the {noun} did {neg}run long .",
           "my friend was {neg}there with me .", "we did {neg}stay for the credits .",
           "it was {neg}shown in many theaters .", "the studio had {neg}planned a sequel .",
           "i did {neg}read the book first .", "the {noun} was {neg}changed for the release .",
           "we were {neg}expecting a comedy .", "the premiere was {neg}in this city ."]


def review(rng: random.Random, positive: bool) -> str:
    """One review of the given class: the evaluative sentence at a random place among the neutral ones."""
    negated = rng.random() < NEGATED
    adjective_positive = positive != negated  # the label is the polarity, flipped by a negation
    adjective = rng.choice(POSITIVE if adjective_positive else NEGATIVE)
    neutral = rng.sample(NEUTRAL, rng.randint(1, 2))
    sentences = [t.format(noun=rng.choice(NOUNS), neg="") for i, t in enumerate(neutral)]
    evaluative = rng.choice(EVALUATIVE).format(noun=rng.choice(NOUNS), adj=adjective, neg="not " if negated else "")
    sentences.insert(rng.randrange(len(sentences) + 1), evaluative)
    return " ".join(sentences) + "\n"


def main() -> None:
    rng = random.Random(SEED)
    for category in ("pos", "neg"):
        folder = HERE / category
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.txt"):
            old.unlink()
    for index in range(2 * PER_CLASS):  # the classes interleaved, so a prefix of the files is balanced
        category = "pos" if index % 2 == 0 else "neg"
        text = review(rng, category == "pos")
        (HERE / category / f"cv{index // 2:03d}_{rng.randrange(100000):05d}.txt").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
