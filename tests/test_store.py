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
    store = GenerationStore(tmp_path, roll_rows=1)  # every write becomes a shard
    path = store.write_shard("fp", [_rec("a", 0, "hello"), _rec("b", 1, "world")])
    assert path.parent == tmp_path / "generations" / "fp"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no .tmp left behind
    assert store.existing_keys("fp") == {"a", "b"}
    t = store.read("fp", keys={"b"}, columns=["text"]).to_pylist()
    assert t == [{"key": "b", "text": "world"}]


def test_duplicate_keys_counted_once(tmp_path):
    store = GenerationStore(tmp_path, roll_rows=1)  # every write becomes a shard
    store.write_shard("fp", [_rec("a", 0, "first")])
    store.write_shard("fp", [_rec("a", 0, "second"), _rec("b", 1)])
    table = store.read("fp")
    assert table.num_rows == 2
    assert sorted(table.column("key").to_pylist()) == ["a", "b"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_damaged_shard_detected_and_quarantined(tmp_path, damage):
    store = GenerationStore(tmp_path, roll_rows=1)  # every write becomes a shard
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
    store = GenerationStore(tmp_path, roll_rows=1)  # every write becomes a shard
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
    store = GenerationStore(tmp_path, roll_rows=1)  # every write becomes a shard
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


def test_journal_is_read_as_a_shard_and_rolled_every_roll_rows(tmp_path):
    store = GenerationStore(tmp_path, roll_rows=10)
    for i in range(25):  # one-sample groups, as llama.cpp yields them
        store.write_shard("fp", [_rec(f"k{i}", i)])
    assert len(store.shards("fp")) == 2 and len(store.journals("fp")) == 1
    other = GenerationStore(tmp_path)  # another process's view: journaled records count
    assert other.existing_keys("fp") == {f"k{i}" for i in range(25)}
    assert set(other.key_locations("fp")) == {f"k{i}" for i in range(25)}
    assert other.read("fp", keys={"k24"}, columns=["text"]).to_pylist() == [{"key": "k24", "text": "x"}]
    store.close()
    assert store.journals("fp") == [] and len(store.shards("fp")) == 3
    assert sum(pq.read_metadata(p).num_rows for p in store.shards("fp")) == 25


def test_torn_journal_tail_is_dropped_and_the_rest_kept(tmp_path):
    store = GenerationStore(tmp_path)
    store.write_shard("fp", [_rec("a")])
    store.write_shard("fp", [_rec("b"), _rec("c", 1)])
    (path,) = store.journals("fp")
    data = path.read_bytes()
    store._journals.pop("fp").close()  # the writer dies (its lock released) without rolling
    path.write_bytes(data[:-7])  # the last frame torn, as by a kill -9 mid-write
    fresh = GenerationStore(tmp_path)
    assert fresh.existing_keys("fp") == {"a"}
    assert fresh.recover("fp") == 1
    assert fresh.journals("fp") == [] and fresh.existing_keys("fp") == {"a"}


def test_roll_rows_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match=r"roll_rows must be at least 1 \(got 0\)"):
        GenerationStore(tmp_path, roll_rows=0)


def _writer(root, wid, lo, hi, done_path, roll_rows):
    """One writer process: keys lo..hi in groups of 1-3, each logged as done once write_shard returns."""
    store = GenerationStore(root, roll_rows=roll_rows)
    with open(done_path, "a") as done:
        i = lo
        while i < hi:
            group = [_rec(f"k{j:05d}", j, f"w{wid}") for j in range(i, min(hi, i + 1 + i % 3))]
            store.write_shard("fp", group)
            done.write("".join(r["key"] + "\n" for r in group))
            done.flush()
            i += len(group)
    store.close()


def test_eight_writers_and_a_compactor_lose_nothing_and_count_nothing_twice(tmp_path):
    """8 processes write overlapping keys while `compact` runs; one is killed -9 mid-write."""
    import multiprocessing as mp
    import os
    import signal

    ctx = mp.get_context("fork")
    done = [tmp_path / f"done-{w}.txt" for w in range(8)]
    # Writer w writes keys [150w, 150w + 300): each key is written by two writers.
    procs = [ctx.Process(target=_writer, args=(tmp_path / "s", w, 150 * w, 150 * w + 300, done[w], 40))
             for w in range(8)]
    for p in procs:
        p.start()
    victim = procs[3]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not done[3].exists() or len(done[3].read_text().split()) < 100):
        time.sleep(0.005)
    os.kill(victim.pid, signal.SIGKILL)
    compactor = GenerationStore(tmp_path / "s")
    checks = 0
    while any(p.is_alive() for p in procs if p is not victim):
        compactor.compact("fp", min_shards=2)
        before = {k for d in done if d.exists() for k in d.read_text().split()}
        seen = compactor.read("fp", columns=["key"]).column("key").to_pylist()
        assert len(seen) == len(set(seen)) and before <= set(seen)  # mid-run, beside the compaction
        checks += 1
    for p in procs:
        p.join(60)
    assert victim.exitcode == -signal.SIGKILL
    assert all(p.exitcode == 0 for p in procs if p is not victim)
    finished = {k for d in done if d.exists() for k in d.read_text().split()}
    assert len(done[3].read_text().split()) < 300  # the victim died before it finished
    assert checks >= 1
    reader = GenerationStore(tmp_path / "s")
    keys = reader.read("fp", columns=["key"]).column("key").to_pylist()
    assert len(keys) == len(set(keys))  # nothing counted twice
    assert finished <= set(keys) <= {f"k{j:05d}" for j in range(1350)}  # nothing finished lost
    # The dead writer's journal was rolled by a live one (close, compact): nobody held its lock.
    assert reader.journals("fp") == []
    reader.compact("fp", min_shards=2)
    assert reader.journals("fp") == [] and len(reader.shards("fp")) == 1
    again = reader.read("fp", columns=["key"]).column("key").to_pylist()
    assert sorted(again) == sorted(keys)


def _die_after_writing(root):
    """A writer killed after its writes: no close, no exit handlers (os._exit), its lock released."""
    import os

    from tts_bench.store import ScoreStore

    gen, scores = GenerationStore(root), ScoreStore(root)  # held: collecting a store rolls its journals
    gen.write_shard("fp", [_rec("a"), _rec("b", 1)])
    scores.write_shard("vfp", [{"key": "s1", "verifier_fp": "vfp", "step_scores": [0.5]}])
    os._exit(0)


def test_cache_compact_rolls_a_dead_writers_journals_and_keeps_a_live_ones(tmp_path):
    import multiprocessing as mp

    from conftest import cli

    from tts_bench.store import ScoreStore

    dead = mp.get_context("fork").Process(target=_die_after_writing, args=(tmp_path,))
    dead.start()
    dead.join(60)
    live = GenerationStore(tmp_path)
    live.write_shard("fp", [_rec("c", 2)])  # this process is alive: its journal is held
    assert len(live.journals("fp")) == 2
    out = cli("cache", "--compact", "--store-dir", str(tmp_path), cwd=tmp_path).stdout
    assert "generations/fp: merged" in out and "scores/vfp: merged" in out
    assert live.journals("fp") == [live._journals["fp"].path]  # the live one untouched
    assert ScoreStore(tmp_path).journals("vfp") == [] and len(ScoreStore(tmp_path).shards("vfp")) == 1
    assert len(live.shards("fp")) == 1
    assert GenerationStore(tmp_path).existing_keys("fp") == {"a", "b", "c"}
    live.close()
    assert live.journals("fp") == [] and GenerationStore(tmp_path).existing_keys("fp") == {"a", "b", "c"}


def _forked_child_writes(store):
    import os

    store.write_shard("fp", [_rec("child")])
    store.close()
    os._exit(0)


def test_a_forked_child_never_rolls_or_writes_its_parents_journal(tmp_path):
    import multiprocessing as mp

    store = GenerationStore(tmp_path)
    store.write_shard("fp", [_rec("parent")])
    mine = store._journals["fp"].path
    child = mp.get_context("fork").Process(target=_forked_child_writes, args=(store,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert mine.exists() and store.journals("fp") == [mine]  # the child rolled only its own
    store.write_shard("fp", [_rec("parent2", 1)])
    assert GenerationStore(tmp_path).existing_keys("fp") == {"parent", "parent2", "child"}
    store.close()
    assert store.journals("fp") == [] and GenerationStore(tmp_path).existing_keys("fp") == \
        {"parent", "parent2", "child"}


def test_a_read_whose_files_were_rolled_and_merged_meanwhile_finds_the_merged_shard(tmp_path):
    writer = GenerationStore(tmp_path, roll_rows=2)
    writer.write_shard("fp", [_rec("a")])
    writer.write_shard("fp", [_rec("b", 1), _rec("c", 2)])  # rolled: one shard
    writer.write_shard("fp", [_rec("d", 3)])  # journaled
    reader = GenerationStore(tmp_path)
    (journal,) = reader.journals("fp")  # where a call layer remembers "d" to be
    writer.close()  # the journal becomes a shard...
    GenerationStore(tmp_path).compact("fp", min_shards=2)  # ...merged with the other into a new one
    assert not journal.exists() and len(reader.shards("fp")) == 1
    got = reader.read_from([journal], keys={"d"}, columns=["text"]).to_pylist()
    assert got == [{"key": "d", "text": "x"}]


def test_read_aligned_follows_the_keys_order_and_texts_survive_rolls_and_merges(tmp_path):
    import pyarrow as pa

    writer = GenerationStore(tmp_path, roll_rows=3)
    writer.write_shard("fp", [_rec(k, i, text=f"text of {k}") for i, k in enumerate("abc")])  # a shard
    # A key stored twice (raced writers) holds the same result twice.
    writer.write_shard("fp", [_rec("d", 3, text="text of d"), _rec("a", 9, text="text of a")])  # journal
    reader = GenerationStore(tmp_path)
    want = pa.array(["d", "zz", "a", "c"])  # "zz" is not stored
    aligned = reader.read_aligned("fp", want, columns=["sample_index"])
    assert aligned.found.tolist() == [True, False, True, True]
    # One row per key: the first listed (journals are listed before shards).
    assert aligned.table.to_pydict() == {"key": ["d", "a", "c"], "sample_index": [3, 9, 2]}

    def texts(al):
        out = [None] * len(al.rows)
        for pos, col in al.column_by_file("text"):
            for i, t in zip(pos.tolist(), col.to_pylist()):
                out[i] = t
        return out

    expect = ["text of d", "text of a", "text of c"]
    assert texts(aligned) == expect
    assert texts(aligned.permuted([2, 0, 1])) == [expect[2], expect[0], expect[1]]
    # The journal grows, then is rolled and merged away, after the listing: same texts.
    writer.write_shard("fp", [_rec("e", 4, text="text of e")])
    assert texts(aligned) == expect
    writer.close()
    GenerationStore(tmp_path).compact("fp", min_shards=2)
    assert texts(aligned.locations()) == expect
