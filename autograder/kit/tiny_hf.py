"""Tiny Hugging Face models and tokenizers built locally, for tests that must not download.

`wordpiece_tokenizer(corpus)` makes a BERT-style WordPiece tokenizer from a few sentences
with the `tokenizers` library (the same vocabulary and ids in every run) and wraps it as a
`transformers` fast tokenizer;
`tiny_distilbert(tokenizer)` is a randomly initialised DistilBERT of a few thousand
weights. The behaviour of the real `distilbert-base-uncased` pair is kept: lower-casing,
[CLS] ... [SEP] around each sentence, [PAD] for padding, "sdpa" attention by default.
"""
from __future__ import annotations

import torch

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wordpiece_tokenizer(corpus: list[str], vocab_size: int = 120):
    """A fast BERT-style tokenizer whose vocabulary is made from `corpus` (a list of sentences).

    Its vocabulary is what WordPiece training keeps on a corpus this small, built in a fixed
    order (the `tokenizers` trainer breaks ties differently from run to run): the special
    tokens, every character alone and as a word piece (`##a`), then whole words, the most
    frequent first, while there is room. A word left out is cut into its characters."""
    import collections

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = collections.Counter(word for text in corpus
                                 for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = sorted({c for word in counts for c in word})
    tokens = [*SPECIAL_TOKENS, *characters, *(f"##{c}" for c in characters)]
    room = max(0, vocab_size - len(tokens))
    words = [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if len(w) > 1][:room]
    backend = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(tokens + words)}, unk_token="[UNK]"))
    backend.normalizer, backend.pre_tokenizer, backend.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def tiny_distilbert(vocab_size: int, *, seed: int = 0, dim: int = 32, n_layers: int = 2, n_heads: int = 4,
                    dropout: float = 0.1, max_position_embeddings: int = 64):
    """A randomly initialised DistilBertModel (training mode, as `from_pretrained` would not be)."""
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(vocab_size=vocab_size, dim=dim, n_layers=n_layers, n_heads=n_heads,
                              hidden_dim=2 * dim, dropout=dropout, attention_dropout=dropout,
                              max_position_embeddings=max_position_embeddings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DistilBertModel(config)
