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
    raise NotImplementedError("pair_counts: not implemented yet")


def learn_bpe(corpus: str, num_merges: int) -> list[tuple[str, str]]:
    """The first `num_merges` BPE merges learned on `corpus`, in the order learned.

    Each step merges the pair with the highest `pair_counts` count; ties go to the smallest
    pair in Python's tuple order. Stops early when no pair is left.
    """
    raise NotImplementedError("learn_bpe: not implemented yet")


def apply_bpe(word: str, merges: list[tuple[str, str]]) -> list[str]:
    """Segment `word`: its characters, then each merge in the order given, over the whole
    word left to right. Unknown characters stay single pieces; "" gives []."""
    raise NotImplementedError("apply_bpe: not implemented yet")


def wordpiece_scores(words: dict[tuple[str, ...], int]) -> dict[tuple[str, str], float]:
    """WordPiece's score of every adjacent pair that occurs:
    count(pair) / (count(first) * count(second)), symbol counts weighted by frequency."""
    raise NotImplementedError("wordpiece_scores: not implemented yet")


def compare_tokenizers(corpus: str, texts: list[str], vocab_size: int = 50) -> dict[str, list[list[str]]]:
    """Train BPE, WordPiece and SentencePiece on `corpus` as the notebook's TokenizerTrainer
    does (see the handout) and return each one's tokens for every text:
    {"bpe": [...], "wordpiece": [...], "sentencepiece": [...]}."""
    raise NotImplementedError("compare_tokenizers: not implemented yet")
