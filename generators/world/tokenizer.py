"""A byte-level BPE tokenizer trained on the world's text corpus, saved as `PreTrainedTokenizerFast`.

Two flavours of the same vocabulary: the caption LM's (GPT-2 style: no special tokens added,
`<|endoftext|>` ends a document) and the CLIP text tower's (lower-cased, `<|endoftext|>`
appended so the tower can pool at the end-of-text token, as open_clip's `pool_type="eos"` does).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_bpe(texts: Iterable[str], vocab_size: int = 512) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_lm_tokenizer(tok: Tokenizer, out: str | Path, max_length: int) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tok.to_str()), eos_token=EOS,
                                   bos_token=EOS, pad_token=PAD, model_max_length=max_length)
    fast.save_pretrained(str(out))
    return fast


def save_clip_tokenizer(tok: Tokenizer, out: str | Path, context_length: int) -> PreTrainedTokenizerFast:
    clip_tok = Tokenizer.from_str(tok.to_str())
    clip_tok.normalizer = normalizers.Lowercase()
    eos_id = clip_tok.token_to_id(EOS)
    clip_tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, eos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=clip_tok, eos_token=EOS, pad_token=PAD,
                                   model_max_length=context_length)
    fast.save_pretrained(str(out))
    return fast
