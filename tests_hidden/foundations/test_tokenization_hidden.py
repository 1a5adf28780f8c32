"""Hidden tests for tokenization.py: random corpora against the reference, and against the
`tokenizers` library where its rules and the handout's agree."""
import json
import random

import pytest

from autograder.kit.checks import expect, fail, shown
from autograder.kit.inplace import copy_of, expect_unchanged, leaves_unchanged


def random_words(seed, alphabet="abcd", n=(5, 40), length=(1, 7)):
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(*length))) for _ in range(rng.randint(*n))]


def segmented(words, seed):
    """Words cut at random places, with frequencies: what pair_counts and wordpiece_scores take."""
    rng = random.Random(seed)
    table = {}
    for w in words:
        cuts = sorted(rng.sample(range(1, len(w)), rng.randint(0, len(w) - 1))) if len(w) > 1 else []
        pieces = tuple(w[a:b] for a, b in zip([0, *cuts], [*cuts, len(w)]))
        table[pieces] = table.get(pieces, 0) + rng.randint(1, 5)
    return table


def _as_lists(value):
    """`value` with every list and tuple turned into a list, recursively: the items without their containers."""
    return [_as_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def _container_hint(got, expected) -> str:
    """' The items are right, but ...' when `got` differs from `expected` only by lists standing for tuples (or
    the reverse), say ('a', 'b') for ['a', 'b']: the handout's signatures fix which is which."""
    if not isinstance(got, (list, tuple)) or _as_lists(got) != _as_lists(expected):
        return ""
    if type(got) is not type(expected):
        return (f" The items are right, but it is a {type(got).__name__}: return a {type(expected).__name__}, "
                "as the handout's signature says.")
    inner = next(((type(g).__name__, type(e).__name__) for g, e in zip(got, expected) if type(g) is not type(e)), None)
    if inner is None:
        return ""
    return (f" The items are right, but they are {inner[0]}s: each should be a {inner[1]}, "
            "as the handout's signature says.")


def _first_difference(got, expected) -> str:
    """' They differ first at item i: ...' for two lists of more than three items (merges, say), whose
    difference is hard to spot in the messages' long lines."""
    if not isinstance(got, list) or not isinstance(expected, list) or max(len(got), len(expected)) <= 3:
        return ""
    i = next((i for i, (g, e) in enumerate(zip(got, expected)) if g != e), min(len(got), len(expected)))
    if i == len(expected):
        return f" The first {i} items are right, then yours has {len(got) - i} more."
    if i == len(got):
        return f" The first {i} items are right, then yours stops ({len(expected) - i} missing)."
    return f" They differ first at item {i}: got {shown(got[i])}, expected {shown(expected[i])}."


def expect_same(got, expected, what, hint=""):
    if not got == expected:  # got and expected let the grader name a catalogued mistake
        where = _container_hint(got, expected) or _first_difference(got, expected)
        fail(f"{what}: got {shown(got)}, expected {shown(expected)}.{where}{hint}", got=got, expected=expected)


UNKNOWN_PIECE_HINT = (" Where '<unk>' is expected your tokens keep the character itself: that is what "
                      "encode(text, out_type=str) gives. The tokens are the pieces of the ids, "
                      "[sp.id_to_piece(i) for i in sp.encode(text, out_type=int)], and an unknown character's id "
                      "is <unk>'s.")


def _unknown_piece_hint(got, expected) -> str:
    """The hint above when `got` differs from `expected` only where `expected` has '<unk>'."""
    same_elsewhere = len(got) == len(expected) and all(g == e or e == "<unk>" for g, e in zip(got, expected))
    return UNKNOWN_PIECE_HINT if same_elsewhere and "<unk>" in expected else ""


@pytest.mark.problem("pair_counts")
@pytest.mark.parametrize("seed", range(6))
def test_pair_counts_random(student, reference, seed):
    """random segmented words with frequencies, some one symbol long"""
    words = segmented(random_words(seed, "abcé"), seed)
    expected = reference.tokenization.pair_counts(copy_of(words))
    with leaves_unchanged("pair_counts(words)", words=words):
        expect_same(student.tokenization.pair_counts(words), expected, f"pair_counts(<{len(words)} segmented words>)")


@pytest.mark.problem("pair_counts")
def test_pair_counts_empty_and_repeats(student, reference):
    """no words at all; a repeated pair inside one word ('aaaa' has three (a, a) pairs)"""
    expect_same(student.tokenization.pair_counts({}), {}, "pair_counts({})")
    words = {("a", "a", "a", "a"): 2, ("aa", "aa"): 1}
    expected = reference.tokenization.pair_counts(copy_of(words))
    with leaves_unchanged("pair_counts(words)", words=words):
        expect_same(student.tokenization.pair_counts(words), expected, f"pair_counts({words})")


@pytest.mark.problem("learn_bpe")
@pytest.mark.isolate("tokenization", "pair_counts")
@pytest.mark.parametrize("seed,alphabet,merges", [(0, "ab", 5), (1, "abc", 10), (2, "abcd", 20), (3, "aé b", 8),
                                                  (4, "xyz", 40), (5, "ab", 200)])
def test_learn_bpe_random(student, reference, seed, alphabet, merges):
    """random corpora with many ties, repeated words and single letters; more merges than possible"""
    corpus = " ".join(random_words(seed, alphabet))
    expect_same(student.tokenization.learn_bpe(corpus, merges), reference.tokenization.learn_bpe(corpus, merges),
                f"learn_bpe({corpus[:40]!r}..., {merges})")


@pytest.mark.problem("learn_bpe")
@pytest.mark.isolate("tokenization", "pair_counts")
def test_learn_bpe_whitespace_and_zero(student, reference):
    """tabs and newlines separate words too; 0 merges gives []; an empty corpus gives []"""
    corpus = "aab\taab\n  ab ba\n"
    expect_same(student.tokenization.learn_bpe(corpus, 4), reference.tokenization.learn_bpe(corpus, 4),
                f"learn_bpe({corpus!r}, 4)")
    expect_same(student.tokenization.learn_bpe(corpus, 0), [], f"learn_bpe({corpus!r}, 0)")
    expect_same(student.tokenization.learn_bpe("", 3), [], 'learn_bpe("", 3)')


def _untied_merges(reference, corpus, n):
    """The reference's merges up to the first step where two pairs tie (there the library's rule differs)."""
    words = {}
    for w in corpus.split():
        words[tuple(w)] = words.get(tuple(w), 0) + 1
    merges = reference.tokenization.learn_bpe(corpus, n)
    for k, pair in enumerate(merges):
        counts = reference.tokenization.pair_counts(words)
        if sum(c == counts[pair] for c in counts.values()) > 1:
            return merges[:k]
        words = {reference.tokenization._merge(w, pair): f for w, f in words.items()}
    return merges


def _library_merges(corpus, n):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    alphabet = set("".join(corpus.split()))
    tokenizer.train_from_iterator([corpus], trainers.BpeTrainer(vocab_size=len(alphabet) + n, min_frequency=0,
                                                                show_progress=False))
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in json.loads(tokenizer.to_str())["model"]["merges"]]


@pytest.mark.problem("learn_bpe")
@pytest.mark.isolate("tokenization", "pair_counts")
def test_learn_bpe_agrees_with_the_library(student, reference):
    """as long as no two pairs tie, the merges are those of tokenizers' BpeTrainer (Whitespace pre-tokenizer)"""
    compared = 0
    for seed in range(40):
        rng = random.Random(seed)
        vocab = random_words(100 + seed, "abcdef", n=(6, 6), length=(2, 7))
        # redslow: counts 1..3 + 4 i (2,874 words over the 40 corpora, 80 untied merges) rather than 1..4 * 3 ** i
        # (35,323 words): a correct learn_bpe that calls pair_counts once per word occurrence (isolated here: one
        # call into the grader each) made 424,000 calls and timed out after 30 s
        corpus = " ".join(w for i, w in enumerate(vocab) for _ in range(rng.randint(1, 3) + 4 * i))
        expected = _untied_merges(reference, corpus, 12)
        got = student.tokenization.learn_bpe(corpus, 12)
        library = _library_merges(corpus, 12)[:len(expected)]
        assert library == expected, "the library disagrees with the reference where no pair ties"  # grader check
        expect_same(got[:len(expected)], library, f"the first {len(expected)} merges of learn_bpe({corpus[:30]!r}..., 12) "
                    "(compared with tokenizers' BpeTrainer)")
        compared += len(expected)
    assert compared >= 40, compared


@pytest.mark.problem("apply_bpe")
@pytest.mark.parametrize("seed", range(5))
def test_apply_bpe_random(student, reference, seed):
    """merges learned on a random corpus, applied to new words (some with unseen letters)"""
    merges = reference.tokenization.learn_bpe(" ".join(random_words(seed, "abc")), 5 + 3 * seed)
    for word in random_words(seed + 50, "abcd", n=(8, 8), length=(0, 9)):
        expected = reference.tokenization.apply_bpe(word, list(merges))
        with leaves_unchanged(f"apply_bpe({word!r}, merges)", merges=merges):
            expect_same(student.tokenization.apply_bpe(word, merges), expected, f"apply_bpe({word!r}, <{len(merges)} merges>)")


@pytest.mark.problem("apply_bpe")
def test_apply_bpe_rank_order_not_frequency(student, reference):
    """a later merge must wait for the earlier ones: ('b','c') before ('a','b') segments 'abc' as a + bc"""
    merges = [("b", "c"), ("a", "b"), ("a", "bc")]
    for word in ("abc", "abcabc", "aabbcc", "cab"):
        expected = reference.tokenization.apply_bpe(word, list(merges))
        with leaves_unchanged(f"apply_bpe({word!r}, merges)", merges=merges):
            expect_same(student.tokenization.apply_bpe(word, merges), expected, f"apply_bpe({word!r}, {merges})")


@pytest.mark.problem("apply_bpe")
def test_apply_bpe_agrees_with_the_library(student, reference):
    """for words of the training alphabet, the pieces of a tokenizers BPE model built from the same merges"""
    from tokenizers import Tokenizer, models

    for seed in range(10):
        merges = reference.tokenization.learn_bpe(" ".join(random_words(seed, "abc")), 8)
        vocab = {c: i for i, c in enumerate("abc")}
        for a, b in merges:
            vocab.setdefault(a + b, len(vocab))
        library = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        for word in random_words(seed + 7, "abc", n=(4, 4), length=(1, 9)):
            with leaves_unchanged(f"apply_bpe({word!r}, merges)", merges=merges):
                expect_same(student.tokenization.apply_bpe(word, merges), library.encode(word).tokens,
                            f"apply_bpe({word!r}, <{len(merges)} merges>) (compared with a tokenizers BPE model)")


@pytest.mark.problem("wordpiece_scores")
@pytest.mark.isolate("tokenization", "pair_counts")
@pytest.mark.parametrize("seed", range(5))
def test_wordpiece_scores_random(student, reference, seed):
    """random segmented words with frequencies"""
    words = segmented(random_words(seed, "abcd"), seed)
    expected, before = reference.tokenization.wordpiece_scores(copy_of(words)), copy_of(words)
    got = student.tokenization.wordpiece_scores(words)
    expect_unchanged(words, before, what="words (its argument in wordpiece_scores(words))")
    expect(isinstance(got, dict) and set(got) == set(expected),
           f"wordpiece_scores should have a score for exactly the pairs that occur ({len(expected)} of them).")
    wrong = [p for p in expected if not abs(got[p] - expected[p]) <= 1e-12 * max(1.0, abs(expected[p]))]
    if wrong:  # got and expected let the grader name a catalogued mistake
        fail(f"wordpiece_scores is wrong for {len(wrong)} pairs, e.g. {wrong[:1]}: got "
             f"{got[wrong[0]]!r}, expected {expected[wrong[0]]!r}.", got=got, expected=expected)


# Corpora and vocabulary sizes on which the library trainers give the same result in every
# process (WordPiece's trainer breaks some ties differently from run to run; tests/ checks these).
LEAD = """The captain will lead the team to victory. They lead him by the hand through the dark corridor.
The roads lead to the village. These evidences lead us to believe he is guilty.
Good teachers lead students to discover answers themselves. The old pipes contained lead and needed replacement.
Lead is a toxic heavy metal. The artist used lead in the stained glass window. Lead weights are used in fishing.
Gasoline with lead was banned decades ago. She played the lead in the school play.
The lead singer of the band quit yesterday. He took the lead in the race.
""" * 3
SEED_CORPUS = """book booker booking booked bookshelf bookcase bookkeeper
reading reader readers reads reading bookshelf
teacher teaching teaches taught classroom
learning learner learns learned education
running runner runs run quickly running
""" * 10
TEXTS = ["book", "booker", "booking", "booked", "bookshelf", "book shelf", "bookshélf", "the leader reads",
         "Lead is heavy."]
TOKENIZER_CASES = [("notebook-50", SEED_CORPUS, 50), ("notebook-40", SEED_CORPUS, 40), ("lead-60", LEAD, 60),
                   ("lead-80", LEAD, 80)]


@pytest.mark.problem("compare_tokenizers")
@pytest.mark.parametrize("name,corpus,vocab_size", TOKENIZER_CASES, ids=[c[0] for c in TOKENIZER_CASES])
def test_compare_tokenizers_like_reference(student, reference, name, corpus, vocab_size):
    """the notebook's corpus and the 'lead' sentences, two vocabulary sizes each: every tokenizer's tokens"""
    texts = list(TEXTS)
    expected = reference.tokenization.compare_tokenizers(corpus, list(TEXTS), vocab_size)
    with leaves_unchanged(f"compare_tokenizers(corpus, texts, {vocab_size})", texts=texts):
        got = student.tokenization.compare_tokenizers(corpus, texts, vocab_size)
        expect(isinstance(got, dict) and set(got) == set(expected),
               f"compare_tokenizers should return a dict with keys {sorted(expected)}.")
        for kind in ("bpe", "wordpiece", "sentencepiece"):
            expect(len(got[kind]) == len(TEXTS), f"compare_tokenizers: {len(got[kind])} {kind} token lists for "
                   f"{len(TEXTS)} texts (corpus {name}, vocab_size={vocab_size}).")
            for text, g, e in zip(TEXTS, got[kind], expected[kind]):
                hint = _unknown_piece_hint(list(g), e) if kind == "sentencepiece" else ""
                expect_same(list(g), e, f"the {kind} tokens of {text!r} (corpus {name}, vocab_size={vocab_size})", hint)
