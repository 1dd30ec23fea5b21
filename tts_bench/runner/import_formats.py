"""Readers for the files `tts-bench import --format` accepts, each to the same rows.

    rows = read_generations(Path("samples_gsm8k_2025-01-01T00-00-00.jsonl"), "lm-eval")

Every reader returns :class:`ImportRow` objects: ``ref`` (what names the
problem: an id, or text to match against the problem statements, see
``importer.resolve_problems``), the generated text, an explicit sample index
where the file gives one, token counts and scores where it has them, and
``where`` (file and line or row) for messages. Formats:

``jsonl`` (default): one generation per line, {"problem_id", "text"} and
    optionally "sample_index", "prompt_tokens", "completion_tokens",
    "finish_reason", "mean_logprob", "verifier_score", "step_scores".
``lm-eval``: lm-evaluation-harness ``--log_samples`` output
    (samples_<task>_<date>.jsonl): one line per document and filter, with
    doc_id, doc, target, arguments and resps (the raw generations, one list
    per request; ``repeats`` > 1 puts several in one list). The raw ``resps``
    are imported, not ``filtered_resps`` (a filter's extracted answer); the
    lines of other filters repeat the same resps and are skipped.
``lighteval``: lighteval details (details_<task>_<date>.parquet): one row
    per document with the structs doc (query, choices, gold_index, id, ...),
    model_response (text: one entry per sample, output_tokens,
    input_tokens, ...) and metric.
``openai-batch``: OpenAI Batch API output: one line per request with
    custom_id, response.body (a chat completion, a completion or a Responses
    API object) and error. The problem and the sample number come from
    custom_id (see :func:`parse_custom_id`); failed requests are counted and
    reported, never imported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError

FORMATS = ("jsonl", "lm-eval", "lighteval", "openai-batch")

# Where the problem is read from and how it is matched, per format (--id-field, --match).
DEFAULT_ID_FIELD = {"jsonl": "problem_id", "lm-eval": "doc", "lighteval": "doc.query",
                    "openai-batch": "custom_id"}
DEFAULT_MATCH = {"jsonl": "id", "lm-eval": "text", "lighteval": "text", "openai-batch": "id"}

# custom_id = "<problem id><separator><sample number>"; the whole custom_id is
# tried as a problem id first (see parse_custom_id).
DEFAULT_ID_PATTERN = r"^(?P<problem>.+)[-_:#/](?P<sample>\d+)$"


@dataclass
class ImportRow:
    ref: Any  # the value at --id-field: a problem id, or text (or a dict of texts) to match
    text: str
    where: str  # "file:line" or "file row i", for messages
    sample_index: int | None = None  # explicit; None: the next free index of its problem
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    mean_logprob: float | None = None
    verifier_score: float | None = None
    step_scores: list | None = None


@dataclass
class ReadResult:
    rows: list[ImportRow]
    notes: list[str]  # what was skipped or approximated, one line each


def read_generations(path: Path, fmt: str, *, id_field: str | None = None,
                     id_pattern: str | None = None, known_ids: set[str] | None = None) -> ReadResult:
    """The generations in ``path`` as ImportRows; ConfigError (one line) on a malformed file."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown import format '{fmt}'. Valid choices: {', '.join(FORMATS)}")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; give a file of generations (--format {fmt})")
    field = id_field or DEFAULT_ID_FIELD[fmt]
    if fmt == "lighteval":
        return _read_lighteval(path, field)
    lines = _json_lines(path)
    if fmt == "jsonl":
        return ReadResult([_jsonl_row(path, n, row, field) for n, row in lines], [])
    if fmt == "lm-eval":
        return _read_lm_eval(path, lines, field)
    return _read_openai_batch(path, lines, field, id_pattern, known_ids or set())


def field_value(row: Any, dotted: str, where: str) -> Any:
    """``row["a"]["b"]`` for "a.b"; ConfigError naming the keys there when one is missing."""
    node = row
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            keys = ", ".join(sorted(map(str, node))) if isinstance(node, dict) else type(node).__name__
            raise ConfigError(f"{where}: no field '{dotted}' (at '{part}': {keys}); "
                              f"choose the field that names the problem with --id-field")
        node = node[part]
    return node


def _json_lines(path: Path) -> list[tuple[int, dict]]:
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{lineno}: expected a JSON object")
        out.append((lineno, row))
    if not out:
        raise ConfigError(f"{path} has no generations")
    return out


def _opt_float(v) -> float | None:
    return None if v is None else float(v)


def _opt_int(v) -> int | None:
    return None if v is None else int(v)


def _jsonl_row(path: Path, lineno: int, row: dict, field: str) -> ImportRow:
    where = f"{path}:{lineno}"
    if "text" not in row or (field == "problem_id" and field not in row):
        raise ConfigError(f"{where}: each line needs \"problem_id\" and \"text\"")
    steps = row.get("step_scores")
    return ImportRow(
        ref=field_value(row, field, where), text=str(row["text"]), where=where,
        sample_index=_opt_int(row.get("sample_index")), prompt_tokens=_opt_int(row.get("prompt_tokens")),
        completion_tokens=_opt_int(row.get("completion_tokens")), finish_reason=row.get("finish_reason"),
        mean_logprob=_opt_float(row.get("mean_logprob")),
        verifier_score=_opt_float(row.get("verifier_score")),
        step_scores=[float(x) for x in steps] if steps is not None else None)


def _read_lm_eval(path: Path, lines: list[tuple[int, dict]], field: str) -> ReadResult:
    rows: list[ImportRow] = []
    seen: dict[Any, str] = {}
    filters: set[str] = set()
    for lineno, rec in lines:
        where = f"{path}:{lineno}"
        if "resps" not in rec or "doc_id" not in rec:
            raise ConfigError(f"{where}: not an lm-evaluation-harness sample (no doc_id/resps); "
                              f"write them with --log_samples, or pick another --format")
        filters.add(str(rec.get("filter", "")))
        doc_id = rec["doc_id"]
        if doc_id in seen:  # the same document under another filter: the same resps
            continue
        seen[doc_id] = where
        ref = field_value(rec, field, where)
        # One list per request; generate_until has one request whose list holds every repeat.
        texts = [t for req in rec["resps"] for t in (req if isinstance(req, list) else [req])]
        for j, text in enumerate(texts):
            if not isinstance(text, str):
                raise ConfigError(f"{where}: resps holds a {type(text).__name__}, not generated text; "
                                  f"only generate_until tasks can be imported")
            rows.append(ImportRow(ref=ref, text=text, where=where, sample_index=j))
    notes = []
    if len(filters) > 1:
        notes.append(f"{path}: {len(filters)} filters ({', '.join(sorted(filters))}) log the same raw "
                     f"generations; each imported once, and graded by tts-bench's own extractor")
    return ReadResult(rows, notes)


def _read_lighteval(path: Path, field: str) -> ReadResult:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same answer
        raise ConfigError(f"{path}: not a Parquet file ({type(e).__name__}: {e}); lighteval writes "
                          f"details_<task>_<date>.parquet under <output_dir>/details/") from None
    if "model_response" not in table.column_names or "doc" not in table.column_names:
        raise ConfigError(f"{path}: no 'doc' and 'model_response' columns (it has "
                          f"{', '.join(table.column_names)}); this reads the details files of "
                          f"lighteval 0.10 and later")
    rows: list[ImportRow] = []
    for i, rec in enumerate(table.select(["doc", "model_response"]).to_pylist()):
        where = f"{path} row {i}"
        resp = rec["model_response"] or {}
        texts = resp.get("text") or []
        out_tokens = resp.get("output_tokens") or []
        prompt = len(resp["input_tokens"]) if resp.get("input_tokens") else None
        ref = field_value(rec, field, where)
        for j, text in enumerate(texts):
            tokens = out_tokens[j] if j < len(out_tokens) and out_tokens[j] else None
            rows.append(ImportRow(ref=ref, text=str(text), where=where, sample_index=j,
                                  prompt_tokens=prompt,
                                  completion_tokens=len(tokens) if tokens is not None else None))
    if not rows:
        raise ConfigError(f"{path} has no generated text (model_response.text is empty in every row)")
    return ReadResult(rows, [])


def parse_custom_id(custom_id: str, pattern: str | None, known_ids: set[str]) -> tuple[str, int | None]:
    """(problem, sample number or None) of an OpenAI batch custom_id.

    With ``pattern`` (--id-pattern), a regex whose named group ``problem`` is
    the problem id and optional group ``sample`` the sample number; it must
    match. Without: a custom_id that is a problem id is that problem (its
    samples are the choices of the one request); otherwise
    ``<problem><-_:#/><sample number>``, split at the last separator
    followed only by digits.
    """
    if pattern is None and custom_id in known_ids:
        return custom_id, None
    m = re.search(pattern or DEFAULT_ID_PATTERN, custom_id)
    if m is None:
        how = f"--id-pattern {pattern}" if pattern else "a problem id, or <problem id>-<sample number>"
        raise ConfigError(f"custom_id '{custom_id}' does not match {how}; give --id-pattern with "
                          f"named groups problem and sample, e.g. '^(?P<problem>.+)__s(?P<sample>\\d+)$'")
    sample = m.groupdict().get("sample")
    return m.group("problem"), int(sample) if sample is not None else None


def _read_openai_batch(path: Path, lines: list[tuple[int, dict]], field: str, pattern: str | None,
                       known_ids: set[str]) -> ReadResult:
    if pattern is not None:
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"--id-pattern '{pattern}' is not a regular expression: {e}") from None
        if "problem" not in compiled.groupindex:
            raise ConfigError(f"--id-pattern '{pattern}' needs a named group (?P<problem>...)")
    failed: list[str] = []
    split_usage = 0
    # (problem, sample number, choice index) -> row; indices are assigned per problem in that order.
    keyed: list[tuple[str, int, int, ImportRow]] = []
    for lineno, rec in lines:
        where = f"{path}:{lineno}"
        if "custom_id" not in rec or "response" not in rec:
            raise ConfigError(f"{where}: not an OpenAI batch output line (no custom_id/response)")
        cid = str(field_value(rec, field, where))
        resp = rec.get("response") or {}
        body = resp.get("body") or {}
        if rec.get("error") or not resp or int(resp.get("status_code") or 0) >= 300:
            err = rec.get("error") or body.get("error") or {}
            failed.append(f"{cid} ({err.get('code') or resp.get('status_code')}: "
                          f"{err.get('message', 'no message')})")
            continue
        problem, sample = parse_custom_id(cid, pattern, known_ids)
        choices = _batch_choices(body, where)
        usage = body.get("usage") or {}
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if completion is not None and len(choices) > 1:
            # usage covers the request: every choice gets its share (the request's mean).
            split_usage += 1
            completion = completion / len(choices)
        for j, (text, finish) in enumerate(choices):
            keyed.append((problem, -1 if sample is None else sample, j, ImportRow(
                ref=problem, text=text, where=where, finish_reason=finish, prompt_tokens=_opt_int(prompt),
                completion_tokens=None if completion is None else int(round(completion)))))
    keyed.sort(key=lambda t: (t[0], t[1], t[2]))
    rows, next_index = [], {}
    for problem, _, _, row in keyed:
        row.sample_index = next_index.get(problem, 0)
        next_index[problem] = row.sample_index + 1
        rows.append(row)
    notes = []
    if failed:
        notes.append(f"{path}: {len(failed)} request(s) failed and were not imported: "
                     f"{'; '.join(failed[:3])}{' ...' if len(failed) > 3 else ''}")
    if split_usage:
        notes.append(f"{path}: {split_usage} request(s) had several choices and one usage count; each "
                     f"choice got the request's mean completion tokens, so per-sample lengths "
                     f"(first-finish, ffs@k) are not the real ones")
    if not rows:
        raise ConfigError(f"{path} has no successful responses" + (f"; {notes[0]}" if notes else ""))
    return ReadResult(rows, notes)


def _batch_choices(body: dict, where: str) -> list[tuple[str, str | None]]:
    """(text, finish_reason) per choice of a chat completion, completion or Responses API body."""
    if "choices" in body:
        out = []
        for c in body["choices"]:
            msg = c.get("message")
            text = msg.get("content") if isinstance(msg, dict) else c.get("text")
            out.append(("" if text is None else str(text), c.get("finish_reason")))
        return out
    if "output" in body:  # /v1/responses: the message items' output_text parts
        parts = [p.get("text", "") for item in body["output"] if item.get("type") == "message"
                 for p in item.get("content") or [] if p.get("type") == "output_text"]
        cut = (body.get("incomplete_details") or {}).get("reason") == "max_output_tokens"
        return [("".join(parts), "length" if cut else "stop")]
    raise ConfigError(f"{where}: response.body has neither choices (chat or completions) nor output "
                      f"(responses); keys: {', '.join(sorted(body))}")
