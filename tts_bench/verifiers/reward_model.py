"""Process and outcome reward models run here through transformers (``kind: prm`` / ``orm``).

One class serves every documented format (``formats.py``): the model class
(token classification, causal LM with a +/- token pair, sequence
classification, or a base model with a value head), the input template and
where scores are read all come from the verifier YAML. Nothing is
downloaded: ``path`` is a folder, or a hub id already in the local cache.

    verifier = RewardModelVerifier(cfg.verifier)
    for group in verifier.score(requests): ...
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Sequence

from ..config import ConfigError
from .base import Score, ScoreRequest, VerifierError, VerifierIdentity, format_of
from .formats import layout_input, readout

_AUTO_CLASS = {
    "token-classification": "AutoModelForTokenClassification",
    "causal-lm": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "value-head": "AutoModel",
}


def resolve_hf_path(path: str, revision: str | None) -> Path:
    """A local folder for ``path``: itself, or its snapshot in the Hugging Face cache (no download)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, revision=revision, local_files_only=True))
    except Exception:
        raise ConfigError(f"verifier.path {path}: not a folder and not in the local Hugging Face cache; "
                          f"download it first (huggingface-cli download {path}) or give a folder") from None


class RewardModelVerifier:
    """A reward model in this process: batched forward passes, scores read at step positions."""

    def __init__(self, vcfg):
        try:
            import torch
            import transformers
        except ImportError:
            raise ConfigError("verifier kind prm/orm needs torch and transformers: "
                              "pip install torch==2.13.0 && pip install -e '.[hf]'") from None
        self.cfg = vcfg
        self.name = vcfg.name
        self.kind = vcfg.kind
        self._torch = torch
        self.folder = resolve_hf_path(vcfg.path, vcfg.revision)
        self.device = _device(torch, vcfg.device)
        dtype = _dtype(torch, vcfg.dtype, self.device)
        kw = {"trust_remote_code": vcfg.trust_remote_code, "local_files_only": True}
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.folder), **kw)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ConfigError(f"verifier.path {vcfg.path}: needs a fast tokenizer (tokenizer.json) "
                              f"to find step positions")
        auto = getattr(transformers, vcfg.auto_class or _AUTO_CLASS[vcfg.model_class])
        self.model = auto.from_pretrained(str(self.folder), dtype=dtype, **kw).to(self.device).eval()
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id or 0
        if vcfg.model_class == "sequence-classification" and self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.pad_id  # it finds each row's last token by padding
        self.pair_ids = None
        if vcfg.readout == "token_pair":
            self.pair_ids = (self._one_token(vcfg.positive_token), self._one_token(vcfg.negative_token))
        self.head = self._value_head(dtype) if vcfg.model_class == "value-head" else None
        self._weights_hash: str | None = None
        self.truncated = 0

    def _one_token(self, text: str) -> int:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ConfigError(f"verifier token '{text}' is {len(ids)} tokens for this tokenizer; "
                              f"token_pair needs one token each")
        return ids[0]

    def _value_head(self, dtype):
        from safetensors import safe_open

        prefix = self.cfg.value_head
        tensors = {}
        for f in sorted(self.folder.glob("*.safetensors")):
            with safe_open(str(f), framework="pt") as st:
                for k in st.keys():
                    if k.startswith(prefix + ".") or k.startswith("model." + prefix + "."):
                        tensors[k.rsplit(".", 1)[-1]] = st.get_tensor(k)
        if "weight" not in tensors:
            raise ConfigError(f"verifier.value_head '{prefix}': no {prefix}.weight in {self.folder}'s "
                              f"safetensors files")
        w = tensors["weight"]
        head = self._torch.nn.Linear(w.shape[1], w.shape[0], bias="bias" in tensors)
        with self._torch.no_grad():
            head.weight.copy_(w)
            if "bias" in tensors:
                head.bias.copy_(tensors["bias"])
        return head.to(self.device, dtype=dtype).eval()

    def identity(self) -> VerifierIdentity:
        if self._weights_hash is None:
            from ..engines.vllm_engine import folder_weights_hash

            self._weights_hash = folder_weights_hash(self.folder)
        dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        return VerifierIdentity(self.name, self.kind, str(self.cfg.path), self._weights_hash,
                                format_of(self.cfg) | {"dtype": dtype})

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[list[tuple[int, Score]]]:
        bs = self.cfg.batch_size
        for lo in range(0, len(requests), bs):
            t = time.perf_counter()
            chunk = list(enumerate(requests[lo: lo + bs], start=lo))
            layouts = [layout_input(self.cfg, self.tokenizer, r.question, r.steps, self.cfg.max_length)
                       for _, r in chunk]
            self.truncated += sum(lay.truncated for lay in layouts)
            rows = self._forward(layouts)
            dt = (time.perf_counter() - t) / len(chunk)
            yield [(i, Score(step_scores=[readout(self.cfg, v) for v in vals], input_tokens=len(lay.ids),
                             latency_s=dt))
                   for (i, _), lay, vals in zip(chunk, layouts, rows)]

    def _forward(self, layouts) -> list[list[list[float]]]:
        """The output vector at every scored position of every layout (right-padded batch)."""
        torch = self._torch
        width = max(len(lay.ids) for lay in layouts)
        ids = torch.full((len(layouts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(layouts), width), dtype=torch.long)
        for b, lay in enumerate(layouts):
            ids[b, : len(lay.ids)] = torch.tensor(lay.ids)
            mask[b, : len(lay.ids)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.no_grad():
            if self.head is not None:
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
                out = self.head(hidden)
            else:
                out = self.model(input_ids=ids, attention_mask=mask)
                out = out.logits if hasattr(out, "logits") else out[0]
        out = out.float()
        result = []
        for b, lay in enumerate(layouts):
            if out.dim() == 2:  # sequence classification: one vector per row
                result.append([out[b].tolist()])
                continue
            vecs = out[b, lay.positions]
            if self.pair_ids is not None:
                vecs = vecs[:, list(self.pair_ids)]
            result.append(vecs.tolist())
        return result

    def close(self) -> None:
        self.model = None
        self.head = None


def _device(torch, name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"verifier.device={name} but no CUDA device is visible; use verifier.device=cpu")
    return name


def _dtype(torch, name: str, device: str):
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ConfigError(f"unknown verifier.dtype '{name}'. Valid choices: auto, bfloat16, float16, "
                          f"float32") from None


__all__ = ["RewardModelVerifier", "VerifierError", "resolve_hf_path"]
