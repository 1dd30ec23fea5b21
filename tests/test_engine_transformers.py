"""engine=transformers beyond the shared contract, on a tiny random-weight Qwen2-shaped model.

Each sample's tokens depend on its seed alone (not its batch, row or
neighbours); the cached, left-padded decode loop matches argmax over full
forward passes token for token;
logprobs are the model's own log_softmax; prefix ids are fed exactly; the
sampler's truncations draw from the distributions they name; the model's
generation_config never applies; the context window caps generation.

    python -m pytest tests/test_engine_transformers.py -q
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from collections import Counter
from dataclasses import replace

import pytest

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
    pytest.skip("torch or transformers is not installed (pip install torch==2.13.0 -e '.[hf]')",
                allow_module_level=True)

import torch  # noqa: E402
from hf_tiny import STEP_SEPARATOR, STEP_TAG, build_tiny_model  # noqa: E402

from tts_bench.config import ConfigError, ModelConfig, TransformersEngineConfig, compose  # noqa: E402
from tts_bench.engines import make_engine  # noqa: E402
from tts_bench.engines.base import (  # noqa: E402
    STOP_EOS,
    STOP_LENGTH,
    STOP_STRING,
    STOP_TOKEN,
    GenerationRequest,
    Message,
    SamplingParams,
)
from tts_bench.engines.transformers_engine import TransformersEngine  # noqa: E402
from tts_bench.engines.vllm_engine import folder_weights_hash  # noqa: E402

QUESTIONS = ["Name the capital of France.", "What is 2+3? Answer with just the number.",
             "Step 1: Let x be the number of apples. What is x?"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "lm")


@pytest.fixture(scope="module")
def engine(folder):
    cfg = compose(["engine=transformers", "model=smollm2-135m-hf", f"model.path={folder}",
                   "model.context_length=512", "engine.device=cpu", "engine.batch_size=4"])
    e = make_engine(cfg.engine, cfg.model)
    yield e
    e.close()


def sibling(engine, **engine_changes) -> TransformersEngine:
    """Another engine over the same loaded model, with other engine settings."""
    return TransformersEngine.from_loaded(engine._model, engine._tokenizer,
                                          replace(engine.cfg, **engine_changes), engine.model_cfg,
                                          weights_hash="same-model")


def request(engine, rid: int, question: str, seeds=(7,), prefix="", prefix_ids=None, **params):
    p = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 12}
    p.update(params)
    msgs = (Message("user", question),)
    return GenerationRequest(rid, engine.render(msgs), msgs, SamplingParams(**p),
                             sample_indices=tuple(range(len(seeds))), seeds=tuple(seeds),
                             prefix=prefix, prefix_ids=prefix_ids)


def run(engine, *requests):
    done = [c for group in engine.generate(list(requests)) for c in group]
    return {(c.request_id, c.sample_index): c for c in done}


def prompt_ids(engine, question: str) -> list[int]:
    return engine.tokenize(engine.render([Message("user", question)]))


def raw_greedy(engine, ids: list[int], n: int) -> list[int]:
    """The argmax continuation of exactly these ids, one full forward pass per token (no cache, no pads)."""
    ids = list(ids)
    start = len(ids)
    with torch.inference_mode():
        for _ in range(n):
            ids.append(int(engine._model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[start:]


# --------------------------------------------------------------------------- seeds and batches


def test_a_seed_gives_the_same_sample_at_any_batch_size_and_with_any_neighbours(engine):
    sampled = dict(temperature=1.0, top_p=0.9, top_k=50, min_p=0.01, max_tokens=12, logprobs=True)
    alone = run(sibling(engine, batch_size=1),
                request(engine, 0, QUESTIONS[0], seeds=(11, 12, 13), **sampled))
    # Batches of 4: two other requests first (greedy, other lengths and samplers), so
    # the three samples land in other rows, split over two batches, beside strangers.
    crowd = run(sibling(engine, batch_size=4),
                request(engine, 5, QUESTIONS[2], seeds=(1,), max_tokens=5),
                request(engine, 6, QUESTIONS[1], seeds=(2, 3), temperature=0.8, top_p=0.5, max_tokens=9),
                request(engine, 0, QUESTIONS[0], seeds=(11, 12, 13), **sampled))
    for i in range(3):
        a, b = alone[(0, i)], crowd[(0, i)]
        assert a.token_ids == b.token_ids and a.text == b.text
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-5)
    assert len({tuple(alone[(0, i)].token_ids) for i in range(3)}) == 3


def test_greedy_decoding_of_a_left_padded_batch_equals_full_forward_argmax(engine):
    # Three prompts of different lengths share one batch (left padding, positions from the mask).
    reqs = [request(engine, i, q, ignore_eos=True, max_tokens=10) for i, q in enumerate(QUESTIONS)]
    assert len({len(prompt_ids(engine, q)) for q in QUESTIONS}) == 3
    done = run(engine, *reqs)
    for i, q in enumerate(QUESTIONS):
        assert done[(i, 0)].token_ids == raw_greedy(engine, prompt_ids(engine, q), 10)


# --------------------------------------------------------------------------- logprobs


def test_logprobs_are_the_models_own_log_softmax_at_the_sampled_tokens(engine):
    done = run(engine, request(engine, 0, QUESTIONS[0], seeds=(3, 4), temperature=1.0, max_tokens=10,
                               logprobs=True, ignore_eos=True))
    ctx = prompt_ids(engine, QUESTIONS[0])
    for c in done.values():
        ids = ctx + c.token_ids
        with torch.inference_mode():
            logits = engine._model(input_ids=torch.tensor([ids])).logits[0].float()
        lp = torch.log_softmax(logits, dim=-1)
        want = [lp[len(ctx) - 1 + i, t].item() for i, t in enumerate(c.token_ids)]
        assert len(c.token_logprobs) == len(c.token_ids) == 10
        assert c.token_logprobs == pytest.approx(want, abs=1e-4)


# --------------------------------------------------------------------------- prefixes


def test_prefix_ids_are_continued_exactly(engine):
    ctx = prompt_ids(engine, QUESTIONS[0])
    greedy = raw_greedy(engine, ctx, 10)
    done = run(engine, request(engine, 0, QUESTIONS[0], prefix_ids=tuple(greedy[:4]),
                               prefix=engine.decode(greedy[:4]), ignore_eos=True, max_tokens=6))
    c = done[(0, 0)]
    assert c.token_ids == greedy[4:] and c.prompt_tokens == len(ctx) + 4
    # Ids the tokenizer would never produce for that text (one id per character) are fed as given.
    text = "The capital"
    split = [i for ch in text for i in engine.tokenize(ch)]
    assert split != engine.tokenize(text)
    odd = run(engine, request(engine, 0, QUESTIONS[0], prefix=text, prefix_ids=tuple(split),
                              ignore_eos=True, max_tokens=6))[(0, 0)]
    assert odd.prompt_tokens == len(ctx) + len(split)
    assert odd.token_ids == raw_greedy(engine, ctx + split, 6)


# --------------------------------------------------------------------------- the sampler


def first_token_distribution(engine, question: str, temperature: float) -> torch.Tensor:
    with torch.inference_mode():
        logits = engine._model(input_ids=torch.tensor([prompt_ids(engine, question)])).logits[0, -1].float()
    return torch.softmax(logits / temperature, dim=-1)


def first_tokens(engine, n: int, **params) -> Counter:
    big = sibling(engine, batch_size=n)
    done = run(big, request(engine, 0, QUESTIONS[0], seeds=tuple(range(1000, 1000 + n)), max_tokens=1,
                            ignore_eos=True, **params))
    return Counter(c.token_ids[0] for c in done.values())


def test_sampling_draws_the_temperature_and_top_p_distribution(engine):
    n, temp, top_p = 1500, 0.7, 0.5
    p = first_token_distribution(engine, QUESTIONS[0], temp)
    vals, order = torch.sort(p, descending=True, stable=True)
    kept = int(((vals.cumsum(0) - vals) < top_p).sum())
    want = {int(order[r]): float(vals[r] / vals[:kept].sum()) for r in range(kept)}
    assert 3 <= kept < len(p) // 2  # the cut is real: some tokens kept, most dropped
    got = first_tokens(engine, n, temperature=temp, top_p=top_p)
    assert set(got) <= set(want)
    for tok, q in want.items():
        sigma = math.sqrt(n * q * (1 - q))
        assert abs(got[tok] - n * q) <= 4.5 * sigma + 1, (tok, got[tok], n * q)


def test_top_k_and_min_p_keep_only_what_they_name(engine):
    p = first_token_distribution(engine, QUESTIONS[0], 1.0)
    top3 = set(torch.topk(p, 3).indices.tolist())
    got = first_tokens(engine, 200, temperature=1.0, top_k=3)
    assert set(got) == top3
    # min_p: tokens with probability at least min_p times the top one's.
    min_p = 0.5
    allowed = set(torch.nonzero(p >= min_p * p.max()).flatten().tolist())
    assert 1 < len(allowed) < len(p)
    got = first_tokens(engine, 200, temperature=1.0, min_p=min_p)
    assert set(got) <= allowed and len(got) > 1


@pytest.mark.parametrize("cut", [{"top_k": 1}, {"min_p": 1.0}, {"top_p": 1e-6}],
                         ids=["top_k=1", "min_p=1", "top_p=1e-6"])
def test_a_cut_to_one_token_is_greedy(engine, cut):
    greedy = run(engine, request(engine, 0, QUESTIONS[1], ignore_eos=True))[(0, 0)].token_ids
    done = run(engine, request(engine, 0, QUESTIONS[1], seeds=(1, 2, 3), temperature=1.3,
                               ignore_eos=True, **cut))
    assert all(c.token_ids == greedy for c in done.values())


# --------------------------------------------------------------------------- stops


def test_a_stop_string_across_tokens_cuts_the_text_and_keeps_the_ids_that_made_it(engine):
    greedy = run(engine, request(engine, 0, QUESTIONS[0], ignore_eos=True, max_tokens=16))[(0, 0)]
    text = greedy.text
    # Three characters from the middle of the text, starting after the first token.
    start = len(engine.decode(greedy.token_ids[:2])) + 1
    stop = text[start: start + 3]
    assert len(stop) == 3 and text.index(stop) == start
    m = next(i for i in range(1, 17) if stop in engine.decode(greedy.token_ids[:i]))
    for keep in (False, True):
        c = run(engine, request(engine, 0, QUESTIONS[0], ignore_eos=True, max_tokens=16, stop=(stop,),
                                include_stop_str_in_output=keep))[(0, 0)]
        assert (c.stop_reason, c.stop_string) == (STOP_STRING, stop)
        assert c.text == text[:start] + (stop if keep else "")
        assert c.token_ids == greedy.token_ids[:m]


def test_min_tokens_holds_a_stop_token_back_and_ignore_eos_runs_to_the_length(engine):
    greedy = run(engine, request(engine, 0, QUESTIONS[1], ignore_eos=True, max_tokens=16))[(0, 0)].token_ids
    j = next(i for i in range(2, 16) if greedy[i] not in greedy[:i])
    stopped = run(engine, request(engine, 0, QUESTIONS[1], ignore_eos=True, max_tokens=16,
                                  stop_token_ids=(greedy[j],)))[(0, 0)]
    assert (stopped.stop_reason, stopped.token_ids) == (STOP_TOKEN, greedy[:j])
    held = run(engine, request(engine, 0, QUESTIONS[1], ignore_eos=True, max_tokens=16, min_tokens=j + 1,
                               stop_token_ids=(greedy[j],)))[(0, 0)]
    assert len(held.token_ids) > j and held.token_ids[:j] == greedy[:j]
    assert greedy[j] not in held.token_ids[: j + 1]
    long = run(engine, request(engine, 0, QUESTIONS[1], ignore_eos=True, max_tokens=16))[(0, 0)]
    assert (long.stop_reason, long.completion_tokens) == (STOP_LENGTH, 16)


def test_eos_ends_a_sample_without_entering_its_ids(engine):
    # Find a prompt/seed whose sample hits the model's EOS within 40 sampled tokens.
    for seed in range(1, 200):
        c = run(engine, request(engine, 0, QUESTIONS[2], seeds=(seed,), temperature=1.0,
                                max_tokens=40))[(0, 0)]
        if c.stop_reason == STOP_EOS:
            break
    else:
        pytest.fail("no sample ended with EOS in 200 seeds")
    eos = engine._tokenizer.eos_token_id
    assert eos not in c.token_ids and c.completion_tokens == len(c.token_ids) < 40
    again = run(engine, request(engine, 0, QUESTIONS[2], seeds=(seed,), temperature=1.0, max_tokens=40,
                                ignore_eos=True))[(0, 0)]
    assert again.token_ids[: len(c.token_ids) + 1] == c.token_ids + [eos]


# --------------------------------------------------------------------------- the model's own config


def test_the_models_generation_config_never_applies(engine, folder, tmp_path):
    other = tmp_path / "lm"
    shutil.copytree(folder, other)
    gen_path = other / "generation_config.json"
    gen = json.loads(gen_path.read_text())
    gen.update(do_sample=True, temperature=0.05, top_k=2, top_p=0.1, repetition_penalty=5.0,
               max_new_tokens=2, min_new_tokens=5)
    gen_path.write_text(json.dumps(gen))
    e2 = TransformersEngine(replace(engine.cfg), replace(engine.model_cfg, path=str(other)))
    try:
        for params in ({}, {"temperature": 1.0, "top_p": 0.95}):
            a = run(engine, request(engine, 0, QUESTIONS[0], seeds=(5, 6), ignore_eos=True, **params))
            b = run(e2, request(e2, 0, QUESTIONS[0], seeds=(5, 6), ignore_eos=True, **params))
            assert {k: c.token_ids for k, c in a.items()} == {k: c.token_ids for k, c in b.items()}
    finally:
        e2.close()


def test_the_context_window_caps_generation(engine):
    ctx = prompt_ids(engine, QUESTIONS[0])
    short = TransformersEngine.from_loaded(engine._model, engine._tokenizer, engine.cfg,
                                           replace(engine.model_cfg, context_length=len(ctx) + 3),
                                           weights_hash="same-model")
    c = run(short, request(engine, 0, QUESTIONS[0], ignore_eos=True, max_tokens=50))[(0, 0)]
    assert (c.stop_reason, c.completion_tokens) == (STOP_LENGTH, 3)
    with pytest.raises(ConfigError) as e:
        run(short, request(engine, 0, QUESTIONS[0], prefix_ids=(5, 6, 7)))
    assert str(e.value) == (
        f"prompt + prefix of {len(ctx) + 3} tokens fills model.context_length={len(ctx) + 3}; raise "
        f"model.context_length or shorten the prompt (stored calls are kept)")


# --------------------------------------------------------------------------- tokenizer, identity, config


def test_tokenize_render_and_identity(engine, folder, tmp_path):
    assert len(engine.tokenize(STEP_SEPARATOR)) == 1 and len(engine.tokenize(STEP_TAG)) == 1
    assert engine.render([Message("user", "hi")]) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ident = engine.identity()
    assert ident.weights_hash == folder_weights_hash(folder) and ident.engine == "transformers"
    assert ident.engine_version.startswith("transformers/")
    other = build_tiny_model(tmp_path / "seed1", seed=1)
    e2 = TransformersEngine(engine.cfg, replace(engine.model_cfg, path=str(other)))
    assert e2.identity().fingerprint != ident.fingerprint
    e2.close()


@pytest.mark.parametrize("override,message", [
    ("engine.device=tpu", "engine.device='tpu': expected auto, cpu, cuda or cuda:N"),
    ("engine.dtype=int8", "engine.dtype='int8': expected one of auto, float32, bfloat16, float16"),
    ("engine.batch_size=0", "engine.batch_size must be a positive integer, got 0"),
])
def test_bad_engine_fields_fail_at_compose_with_one_line(override, message):
    with pytest.raises(ConfigError) as e:
        compose(["engine=transformers", override])
    assert str(e.value) == message


def test_a_context_beyond_the_models_positions_and_a_missing_gpu_are_refused(folder):
    with pytest.raises(ConfigError) as e:
        TransformersEngine(TransformersEngineConfig(device="cpu"), ModelConfig(path=str(folder),
                                                                              context_length=4096))
    assert str(e.value) == ("model.context_length=4096 exceeds the model's max_position_embeddings=512; "
                            "set model.context_length=512 or less")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError) as e:
            TransformersEngine(TransformersEngineConfig(device="cuda"), ModelConfig(path=str(folder)))
        assert str(e.value) == (f"engine.device=cuda but torch {torch.__version__} sees no CUDA device; "
                                f"use engine.device=cpu")
