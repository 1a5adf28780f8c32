"""Tiny Hugging Face models and tokenizers built locally, for tests that must not download.

`wordpiece_tokenizer(corpus)` trains a BERT-style WordPiece tokenizer on a few sentences
with the `tokenizers` library and wraps it as a `transformers` fast tokenizer;
`tiny_distilbert(tokenizer)` is a randomly initialised DistilBERT of a few thousand
weights. The behaviour of the real `distilbert-base-uncased` pair is kept: lower-casing,
[CLS] ... [SEP] around each sentence, [PAD] for padding, "sdpa" attention by default.
"""
from __future__ import annotations

import torch

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wordpiece_tokenizer(corpus: list[str], vocab_size: int = 120):
    """A fast BERT-style tokenizer trained on `corpus` (a list of sentences)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    backend.train_from_iterator(corpus, trainer)
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
