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


# ---- a small labelled review set and a sequence classifier, for fine-tuning with `Trainer` ----

REVIEW_WORDS = {
    "positive": ["great", "wonderful", "superb", "moving", "brilliant", "delightful", "charming", "gripping"],
    "negative": ["awful", "boring", "dull", "terrible", "clumsy", "tedious", "bland", "messy"],
    "neutral": ["the", "film", "plot", "story", "actors", "was", "and", "a", "with", "scenes", "music",
                "director", "ending", "cast", "script", "camera", "is", "of", "very", "quite", "this", "movie",
                "some", "in", "its", "second", "half", "it", "felt", "at", "times"],
}


def synthetic_reviews(n: int, seed: int) -> dict:
    """`n` short labelled "reviews" as columns, `{"text": [str], "label": [int]}` (1 positive, 0
    negative), the same for the same arguments: 6 to 20 neutral words with two to four words of
    the label's sentiment among them and, one time in five, one word of the other sentiment (at
    most 25 words: 27 tokens with [CLS] and [SEP]). A tiny DistilBERT learns it in three epochs of
    256 examples (`benchmarks/training_seeds.py`: 20 seeds)."""
    import random

    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randrange(2)
        words = [rng.choice(REVIEW_WORDS["neutral"]) for _ in range(rng.randint(6, 20))]
        own, other = (REVIEW_WORDS["positive"], REVIEW_WORDS["negative"])[::1 if label else -1]
        added = [rng.choice(own) for _ in range(rng.randint(2, 4))]
        if rng.random() < 0.2:
            added.append(rng.choice(other))
        for word in added:
            words.insert(rng.randrange(len(words) + 1), word)
        texts.append(" ".join(words))
        labels.append(label)
    return {"text": texts, "label": labels}


def review_tokenizer():
    """A WordPiece tokenizer whose vocabulary holds every word of `synthetic_reviews` whole."""
    corpus = [" ".join(words) for words in REVIEW_WORDS.values()]
    return wordpiece_tokenizer(corpus, vocab_size=len(SPECIAL_TOKENS) + 2 * 26 + sum(map(len, REVIEW_WORDS.values())))


def tiny_classifier(vocab_size: int, *, seed: int = 0, num_labels: int = 2, dim: int = 32, n_layers: int = 2,
                    n_heads: int = 4, dropout: float = 0.1, max_position_embeddings: int = 64):
    """A randomly initialised DistilBertForSequenceClassification (what `from_pretrained(name,
    num_labels=2)` gives, without the pretrained weights), in training mode."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=vocab_size, dim=dim, n_layers=n_layers, n_heads=n_heads,
                              hidden_dim=2 * dim, dropout=dropout, attention_dropout=dropout,
                              seq_classif_dropout=dropout, max_position_embeddings=max_position_embeddings,
                              num_labels=num_labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DistilBertForSequenceClassification(config)


def encode_reviews(tokenizer, data: dict, max_length: int) -> list[dict]:
    """`data`'s columns (`synthetic_reviews`) as a dataset for `Trainer`: one example per text,
    `{"input_ids", "attention_mask", "labels"}`, cut and padded to `max_length` tokens."""
    encoding = tokenizer(list(data["text"]), truncation=True, padding="max_length", max_length=max_length)
    return [{"input_ids": ids, "attention_mask": mask, "labels": int(label)}
            for ids, mask, label in zip(encoding["input_ids"], encoding["attention_mask"], data["label"])]


@torch.no_grad()
def classifier_logits(model, examples: list[dict]) -> torch.Tensor:
    """The logits (N, num_labels) of a sequence classifier on `encode_reviews`' examples, in eval
    mode, on the CPU (the model is left in eval mode)."""
    model.eval()
    ids = torch.tensor([e["input_ids"] for e in examples])
    mask = torch.tensor([e["attention_mask"] for e in examples])
    return model(input_ids=ids, attention_mask=mask).logits.float()
