"""Public tests for tokenization.py: small corpora whose merges and scores you can work out by hand."""
import pytest

from autograder.kit.checks import expect, shown
from autograder.kit.inplace import leaves_unchanged

SEED_CORPUS = """book booker booking booked bookshelf bookcase bookkeeper
reading reader readers reads reading bookshelf
teacher teaching teaches taught classroom
learning learner learns learned education
running runner runs run quickly running
""" * 10


def expect_same(got, expected, what):
    expect(got == expected, f"{what} returned {shown(got, 600)}, expected {shown(expected, 600)}.")


@pytest.mark.problem("pair_counts")
def test_pair_counts_by_hand(student):
    """{("a","b","a","b"): 2} -> {("a","b"): 4, ("b","a"): 2}"""
    words = {("a", "b", "a", "b"): 2}
    with leaves_unchanged("pair_counts(words)", words=words):
        expect_same(student.tokenization.pair_counts(words), {("a", "b"): 4, ("b", "a"): 2},
                    'pair_counts({("a", "b", "a", "b"): 2})')


@pytest.mark.problem("pair_counts")
def test_pair_counts_two_words(student):
    """pairs never cross words; a one-symbol word has no pair; words is left unchanged"""
    words = {("l", "o", "w"): 5, ("lo", "w", "e", "r"): 2, ("x",): 7}
    expected = {("l", "o"): 5, ("o", "w"): 5, ("lo", "w"): 2, ("w", "e"): 2, ("e", "r"): 2}
    with leaves_unchanged("pair_counts(words)", words=words):
        expect_same(student.tokenization.pair_counts(words), expected, f"pair_counts({words})")


@pytest.mark.problem("learn_bpe")
@pytest.mark.isolate("tokenization", "pair_counts")
def test_learn_bpe_low_lower(student):
    """'low low low lower': (l,o) and (o,w) tie at 4, the smaller pair (l,o) goes first"""
    got = student.tokenization.learn_bpe("low low low lower", 3)
    # counts: (l,o) 4, (o,w) 4, (w,e) 1, (e,r) 1 -> (l,o); then (lo,w) 4 -> merge; then (low,e) and (e,r) tie at 1
    expect_same(got, [("l", "o"), ("lo", "w"), ("e", "r")], 'learn_bpe("low low low lower", 3)')


@pytest.mark.problem("learn_bpe")
@pytest.mark.isolate("tokenization", "pair_counts")
def test_learn_bpe_stops_when_nothing_is_left(student):
    """'aab aab': (a,a) and (a,b) tie, (a,a) goes first, then (aa,b): two merges, however many are asked for"""
    expect_same(student.tokenization.learn_bpe("aab aab", 5), [("a", "a"), ("aa", "b")], 'learn_bpe("aab aab", 5)')


@pytest.mark.problem("learn_bpe")
@pytest.mark.isolate("tokenization", "pair_counts")
def test_learn_bpe_frequencies_and_overlaps(student):
    """'ab cd cd': (c,d) counts 2 (the words' frequencies), so it goes first; 'aaa': (a,a) leaves ('aa', 'a'), no overlap"""
    expect_same(student.tokenization.learn_bpe("ab cd cd", 1), [("c", "d")], 'learn_bpe("ab cd cd", 1)')
    # "aaa" has (a, a) twice; merged left to right it becomes ("aa", "a"), whose one pair is (aa, a)
    expect_same(student.tokenization.learn_bpe("aaa", 2), [("a", "a"), ("aa", "a")], 'learn_bpe("aaa", 2)')


@pytest.mark.problem("apply_bpe")
def test_apply_bpe_by_hand(student):
    """merges applied in the order given; unknown characters stay alone; no overlap in 'aaa'"""
    merges = [("l", "o"), ("lo", "w"), ("e", "r"), ("a", "a")]
    with leaves_unchanged("apply_bpe(word, merges)", merges=merges):
        expect_same(student.tokenization.apply_bpe("lower", merges), ["low", "er"], 'apply_bpe("lower", merges)')
        expect_same(student.tokenization.apply_bpe("lozenge", merges), ["lo", "z", "e", "n", "g", "e"],
                    'apply_bpe("lozenge", merges)')
        expect_same(student.tokenization.apply_bpe("aaa", merges), ["aa", "a"], 'apply_bpe("aaa", merges)')
        expect_same(student.tokenization.apply_bpe("", merges), [], 'apply_bpe("", merges)')
    # the order given, not sorted: (b, c) first leaves nothing for (a, b)
    expect_same(student.tokenization.apply_bpe("abc", [("b", "c"), ("a", "b")]), ["a", "bc"],
                'apply_bpe("abc", [("b", "c"), ("a", "b")])')


@pytest.mark.problem("wordpiece_scores")
@pytest.mark.isolate("tokenization", "pair_counts")
def test_wordpiece_scores_by_hand(student):
    """{(a,b): 2, (b,c): 1}: a 2, b 3, c 1; (a,b) 2/(2*3), (b,c) 1/(3*1), as Python floats"""
    words = {("a", "b"): 2, ("b", "c"): 1}
    expected = {("a", "b"): 2 / 6, ("b", "c"): 1 / 3}
    with leaves_unchanged("wordpiece_scores(words)", words=words):
        got = student.tokenization.wordpiece_scores(words)
        expect(isinstance(got, dict) and got.keys() == expected.keys(), f"wordpiece_scores returned {got!r}, expected {expected!r}.")
        expect(all(abs(got[k] - v) < 1e-12 for k, v in expected.items()), f"wordpiece_scores returned {got!r}, expected {expected!r}.")
        expect(all(isinstance(v, float) for v in got.values()),
               f"wordpiece_scores should give Python floats, got {sorted({type(v).__name__ for v in got.values()})}.")


@pytest.mark.problem("compare_tokenizers")
def test_compare_tokenizers_notebook(student):
    """the notebook's corpus, vocab_size 50: three lists of tokens per text, 'book' a single token"""
    texts = ["book", "booker", "book shelf"]
    with leaves_unchanged("compare_tokenizers(corpus, texts, 50)", texts=texts):
        got = student.tokenization.compare_tokenizers(SEED_CORPUS, texts, 50)
        expect(isinstance(got, dict) and set(got) == {"bpe", "wordpiece", "sentencepiece"},
               f"compare_tokenizers should return a dict with keys bpe, wordpiece, sentencepiece; got {shown(got, 200)}.")
        expect_same(got["bpe"][0], ["Ġbook"], "the BPE tokens of 'book'")   # ByteLevel marks a word start with Ġ
        expect_same(got["wordpiece"][1], ["book", "##er"], "the WordPiece tokens of 'booker'")
        expect_same(got["sentencepiece"][0], ["▁book"], "the SentencePiece tokens of 'book'")
        expect(all(len(got[k]) == len(texts) for k in got), "each tokenizer should give one token list per text.")
