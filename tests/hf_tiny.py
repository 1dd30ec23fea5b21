"""Tiny Hugging Face models with random weights, built on the spot (nothing is downloaded).

Tests of the transformers engine and of the reward-model verifiers need a real
``transformers`` model on CPU. This module builds one in a folder: a byte-level
BPE tokenizer trained on a few lines of maths text (with a ChatML chat
template, ``<|im_end|>`` as EOS, ``<|endoftext|>`` as padding, the special
token ``<extra_0>`` (Qwen2.5-Math-PRM's step separator) and the plain added
token ``ки`` (Math-Shepherd's step tag), each one id), and a 2-layer
Qwen2-shaped or Llama-shaped model with seeded random weights saved as
safetensors beside it, loadable with the ``AutoModelFor*`` classes.

    from hf_tiny import build_tiny_model, build_tiny_tokenizer   # tests/ is on sys.path in pytest

    folder = build_tiny_model(tmp_path / "lm")                              # causal LM, Qwen2-shaped
    prm = build_tiny_model(tmp_path / "prm", head="token", num_labels=2)    # AutoModelForTokenClassification
    orm = build_tiny_model(tmp_path / "orm", head="sequence", num_labels=1, arch="llama")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.convert_tokens_to_ids("<extra_0>"), tok.encode("ки", add_special_tokens=False)  # one id each

``build_tiny_tokenizer(folder)`` writes only the tokenizer (scripts reuse it:
``sys.path.insert(0, "tests")``). Weights depend only on ``seed`` and the
config, so two builds with the same arguments hold the same model. Needs
``torch``, ``transformers`` and ``tokenizers`` (the ``hf`` extra).
"""

from __future__ import annotations

from pathlib import Path

EOS = "<|im_end|>"
PAD = "<|endoftext|>"
IM_START = "<|im_start|>"
STEP_SEPARATOR = "<extra_0>"  # Qwen2.5-Math-PRM: steps joined by it, a special token
STEP_TAG = "ки"  # Math-Shepherd: after every step, an ordinary (non-special) token
SPECIAL_TOKENS = [PAD, IM_START, EOS, STEP_SEPARATOR]

# ChatML, as Qwen2.5 writes it (without the default system prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# What the BPE merges are learnt from: enough maths and chat text that common
# words and numbers become single tokens.
CORPUS = [
    "What is 2+3? Answer with just the number. 2 + 3 = 5",
    "Name the capital of France. The capital of France is Paris.",
    "Step 1: Let x be the number of apples. Step 2: Then 3x + 4 = 19, so x = 5.",
    "The answer is \\boxed{42}. Therefore the final answer is 7.",
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Is the answer correct (Yes/No)? Yes. No. Let's verify the solution.",
    "We compute 12 * 7 = 84 and 84 / 2 = 42. Wait, check again: 6 * 7 = 42.",
    "user assistant system + - = ( ) [ ] { } 0 1 2 3 4 5 6 7 8 9 \\frac{1}{2} x^2 + y^2",
]
VOCAB_SIZE = 512


def build_tiny_tokenizer(folder: str | Path, vocab_size: int = VOCAB_SIZE):
    """Train a byte-level BPE tokenizer, save it to ``folder``, return it (a PreTrainedTokenizerFast).

    The whole byte alphabet is in the vocabulary, so any text encodes; the
    added tokens come first (``<|endoftext|>`` is id 0).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START, STEP_SEPARATOR],
        clean_up_tokenization_spaces=False,
    )
    fast.add_tokens([STEP_TAG])  # an ordinary token, kept by decode(skip_special_tokens=True)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(folder))
    return fast


def tiny_config(arch: str = "qwen2", *, vocab_size: int, head: str = "causal", num_labels: int = 2,
                eos_token_id: int | None = None, pad_token_id: int | None = None,
                hidden_size: int = 64, num_layers: int = 2, max_positions: int = 512,
                initializer_range: float = 0.3):
    """A 2-layer config of the given family: ``qwen2`` (q/k/v biases, GQA) or ``llama``.

    ``initializer_range`` 0.3, not transformers' 0.02: at 0.02 a model this
    small is near-uniform and its greedy path repeats one token forever; at
    0.3 its greedy text varies token to token and sampling is still spread
    (top probability about 0.1), and classification heads' probabilities
    spread over (0, 1) instead of sitting near 0.5.
    """
    from transformers import LlamaConfig, Qwen2Config

    families = {"qwen2": Qwen2Config, "llama": LlamaConfig}
    if arch not in families:
        raise ValueError(f"arch={arch!r}: choose one of {', '.join(families)}")
    kw = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        bos_token_id=None,
        initializer_range=initializer_range,
    )
    if head != "causal":
        kw["num_labels"] = num_labels
    return families[arch](**kw)


HEADS = ("causal", "token", "sequence")


def build_tiny_model(folder: str | Path, *, arch: str = "qwen2", head: str = "causal", num_labels: int = 2,
                     seed: int = 0, **config) -> Path:
    """Tokenizer + random-weight model in ``folder`` (created); returns the folder.

    ``head``: ``causal`` (AutoModelForCausalLM), ``token``
    (AutoModelForTokenClassification, ``num_labels`` per token) or
    ``sequence`` (AutoModelForSequenceClassification). Extra keyword
    arguments go to :func:`tiny_config` (hidden_size, num_layers, ...).
    """
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    classes = {"causal": AutoModelForCausalLM, "token": AutoModelForTokenClassification,
               "sequence": AutoModelForSequenceClassification}
    if head not in classes:
        raise ValueError(f"head={head!r}: choose one of {', '.join(HEADS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = build_tiny_tokenizer(folder)
    cfg = tiny_config(arch, vocab_size=len(tok), head=head, num_labels=num_labels,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **config)
    torch.manual_seed(seed)
    model = classes[head].from_config(cfg)
    model.to(torch.float32).save_pretrained(str(folder))
    return folder
