"""Subword tokenization: BPE and the WordPiece score from scratch, and the library tokenizers.

Words are `corpus.split()`; a segmented word is a tuple of symbols (strings), starting as
its characters: "low" is ("l", "o", "w").
"""
import os
import tempfile

import sentencepiece as spm
from tokenizers import Tokenizer
from tokenizers.models import BPE, WordPiece
from tokenizers.pre_tokenizers import ByteLevel, Whitespace
from tokenizers.trainers import BpeTrainer, WordPieceTrainer


def pair_counts(words: dict[tuple[str, ...], int]) -> dict[tuple[str, str], int]:
    """Occurrences of every adjacent pair of symbols, weighted by the words' frequencies.

    `{("a", "b", "a", "b"): 2}` gives `{("a", "b"): 4, ("b", "a"): 2}`; pairs that do not
    occur are absent.
    """
    # BEGIN SOLUTION
    counts: dict[tuple[str, str], int] = {}
    for word, freq in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] = counts.get(pair, 0) + freq
    return counts
    # END SOLUTION


# BEGIN SOLUTION
def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """`word` with every occurrence of `pair` merged, left to right, without overlaps."""
    merged, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            merged.append(word[i] + word[i + 1])
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return tuple(merged)
# END SOLUTION


def learn_bpe(corpus: str, num_merges: int) -> list[tuple[str, str]]:
    """The first `num_merges` BPE merges learned on `corpus`, in the order learned.

    Each step merges the pair with the highest `pair_counts` count; ties go to the smallest
    pair in Python's tuple order. Stops early when no pair is left.
    """
    # BEGIN SOLUTION
    words: dict[tuple[str, ...], int] = {}
    for w in corpus.split():
        words[tuple(w)] = words.get(tuple(w), 0) + 1
    merges = []
    for _ in range(num_merges):
        counts = pair_counts(words)
        if not counts:
            break
        pair = max(sorted(counts), key=counts.get)
        merges.append(pair)
        words = {_merge(w, pair): f for w, f in words.items()}
    return merges
    # END SOLUTION


def apply_bpe(word: str, merges: list[tuple[str, str]]) -> list[str]:
    """Segment `word`: its characters, then each merge in the order given, over the whole
    word left to right. Unknown characters stay single pieces; "" gives []."""
    # BEGIN SOLUTION
    symbols = tuple(word)
    for pair in merges:
        symbols = _merge(symbols, pair)
    return list(symbols)
    # END SOLUTION


def wordpiece_scores(words: dict[tuple[str, ...], int]) -> dict[tuple[str, str], float]:
    """WordPiece's score of every adjacent pair that occurs:
    count(pair) / (count(first) * count(second)), symbol counts weighted by frequency."""
    # BEGIN SOLUTION
    symbols: dict[str, int] = {}
    for word, freq in words.items():
        for s in word:
            symbols[s] = symbols.get(s, 0) + freq
    return {(a, b): n / (symbols[a] * symbols[b]) for (a, b), n in pair_counts(words).items()}
    # END SOLUTION


def compare_tokenizers(corpus: str, texts: list[str], vocab_size: int = 50) -> dict[str, list[list[str]]]:
    """Train BPE, WordPiece and SentencePiece on `corpus` as the notebook's TokenizerTrainer
    does (see the handout) and return each one's tokens for every text:
    {"bpe": [...], "wordpiece": [...], "sentencepiece": [...]}."""
    # BEGIN SOLUTION
    with tempfile.TemporaryDirectory() as folder:
        corpus_file = os.path.join(folder, "corpus.txt")
        with open(corpus_file, "w", encoding="utf-8") as f:
            f.write(corpus)

        bpe = Tokenizer(BPE())
        bpe.pre_tokenizer = ByteLevel()
        bpe.train([corpus_file], BpeTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=["[UNK]"],
                                            show_progress=False))
        bpe.model.unk_token = "[UNK]"

        wordpiece = Tokenizer(WordPiece(unk_token="[UNK]"))
        wordpiece.pre_tokenizer = Whitespace()
        wordpiece.train([corpus_file], WordPieceTrainer(vocab_size=vocab_size, min_frequency=1,
                                                        special_tokens=["[UNK]"], show_progress=False))

        prefix = os.path.join(folder, "sp")
        spm.SentencePieceTrainer.train(input=corpus_file, model_prefix=prefix, vocab_size=vocab_size,
                                       model_type="bpe", character_coverage=1.0, minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=f"{prefix}.model")

    return {"bpe": [bpe.encode(t).tokens for t in texts],
            "wordpiece": [wordpiece.encode(t).tokens for t in texts],
            "sentencepiece": [[sp.id_to_piece(i) for i in sp.encode(t, out_type=int)] for t in texts]}
    # END SOLUTION
