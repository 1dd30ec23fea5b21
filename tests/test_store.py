"""The generation store: atomic shards, damage detection, dedupe, keys."""

from __future__ import annotations

import time

import pyarrow.parquet as pq
import pytest

from tts_bench.store import SCHEMA_VERSION, DamagedShardWarning, GenerationStore, sample_key


def _rec(key: str, i: int = 0, text: str = "x") -> dict:
    return {
        "key": key, "schema_version": SCHEMA_VERSION, "model_fp": "fp", "model_id": "m",
        "weights_hash": "w", "engine": "e", "engine_version": "1", "dataset": "d",
        "problem_id": "p", "prompt_sha": "s", "sample_index": i, "base_seed": 0, "seed": i,
        "params_json": "{}", "temperature": 0.7, "max_tokens": 16, "text": text,
        "prompt_tokens": 3, "completion_tokens": 2, "finish_reason": "stop",
        "mean_logprob": None, "token_logprobs": None, "latency_s": 0.1, "created_at": time.time(),
    }


def test_roundtrip_and_no_temp_files(tmp_path):
    store = GenerationStore(tmp_path)
    path = store.write_shard("fp", [_rec("a", 0, "hello"), _rec("b", 1, "world")])
    assert path.parent == tmp_path / "generations" / "fp"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no .tmp left behind
    assert store.existing_keys("fp") == {"a", "b"}
    t = store.read("fp", keys={"b"}, columns=["text"]).to_pylist()
    assert t == [{"key": "b", "text": "world"}]


def test_duplicate_keys_counted_once(tmp_path):
    store = GenerationStore(tmp_path)
    store.write_shard("fp", [_rec("a", 0, "first")])
    store.write_shard("fp", [_rec("a", 0, "second"), _rec("b", 1)])
    table = store.read("fp")
    assert table.num_rows == 2
    assert sorted(table.column("key").to_pylist()) == ["a", "b"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_damaged_shard_detected_and_quarantined(tmp_path, damage):
    store = GenerationStore(tmp_path)
    good = store.write_shard("fp", [_rec("a")])
    bad = store.write_shard("fp", [_rec("b"), _rec("c", 1)])
    data = bad.read_bytes()
    if damage == "truncate":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        mid = len(data) // 2
        bad.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :])
    else:
        bad.write_bytes(b"")
    fresh = GenerationStore(tmp_path)
    with pytest.warns(DamagedShardWarning, match="its samples will be regenerated"):
        keys = fresh.existing_keys("fp")
    assert keys == {"a"}  # b and c count as missing: the next run regenerates them
    assert not bad.exists() and good.exists()
    moved = tmp_path / "quarantine" / "fp" / bad.name
    assert moved.exists()  # kept for inspection, never deleted
    assert fresh.quarantined == [moved]


def test_compaction_keeps_every_row(tmp_path):
    store = GenerationStore(tmp_path)
    for i in range(20):
        store.write_shard("fp", [_rec(f"k{i}", i)])
    store.write_shard("fp", [_rec("k3", 3)])  # a duplicate
    removed = store.compact("fp", min_shards=2)
    assert removed == 21
    assert len(store.shards("fp")) == 1
    assert store.existing_keys("fp") == {f"k{i}" for i in range(20)}
    assert pq.read_metadata(store.shards("fp")[0]).num_rows == 20


def test_key_covers_every_input():
    base = dict(model_fp="m", prompt="p", params={"temperature": 0.7, "top_p": 1.0},
                base_seed=0, seed=5, sample_index=0)
    k0 = sample_key(**base)
    variants = [
        {"model_fp": "m2"}, {"prompt": "p "}, {"params": {"temperature": 0.8, "top_p": 1.0}},
        {"params": {"temperature": 0.7, "top_p": 0.9}}, {"base_seed": 1}, {"seed": 6},
        {"sample_index": 1},
    ]
    keys = {sample_key(**{**base, **v}) for v in variants}
    assert k0 not in keys and len(keys) == len(variants)
    assert sample_key(**base) == k0


def test_lone_surrogates_are_stored_as_replacement_and_nothing_else_changes(tmp_path):
    """JSON "\\ud800" (a half of a UTF-16 pair) decodes to a str UTF-8 cannot encode; the
    write must keep the batch: U+FFFD in its place, every other character and row as given."""
    import json

    from tts_bench.store import CallRecord

    bad = json.loads('"caf\\u00e9 \\ud800 x\\udfff \\ud83d\\ude00"')  # two lone halves, one real pair
    store = GenerationStore(tmp_path)
    store.write_shard("fp", [_rec("a", 0, "fine"), _rec("b", 1, bad)])
    rec = CallRecord(**{**_rec("c", 2, bad), "stop_string": "\udc80"})
    assert rec.repaired == 3 and rec.text == "café \ufffd x\ufffd 😀"
    store.write_shard("fp", [rec])
    got = store.read("fp", columns=["text", "stop_string"]).to_pydict()
    by_key = {k: (t, s) for k, t, s in zip(got["key"], got["text"], got["stop_string"])}
    assert by_key == {"a": ("fine", None), "b": ("café \ufffd x\ufffd 😀", None),
                      "c": ("café \ufffd x\ufffd 😀", "\ufffd")}
    assert (store.repaired_rows, store.repaired_chars) == (2, 5)
    assert store.repair_note() == ("2 sample(s) held 5 lone surrogate(s) (half of a UTF-16 pair, which "
                                   "UTF-8 cannot store); each was stored as U+FFFD, the rest of the "
                                   "text as sent")
    assert GenerationStore(tmp_path).repair_note() is None
