"""Scoring on Ray Data against the single-process scorer: a local Ray of 2 CPUs shared by
every test here, a tiny random model. Every test has a wall-clock limit, so that a hang (an
actor pool waiting for CPUs that never come) fails instead of stalling CI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray  # in the dev extra: without it these tests fail to collect (never skip silently)

from conftest import conversation
from qualaudit.cli import main
from qualaudit.errors import UsageError
from qualaudit.integrations.ray import read_transcripts, score_dataset, score_files
from qualaudit.io import read_scores
from qualaudit.scorer import Auditor

pytestmark = pytest.mark.timeout(240)
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def local_ray():
    os.environ["PYTHONPATH"] = os.pathsep.join(  # workers import tests/ray_actors.py by name
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def transcripts(n: int, prefix: str = "t") -> list[dict]:
    """n varied transcripts: lengths 1-7 turns, AI and human agents, metadata."""
    lines = ["my card was charged twice", "sorry about that, refund sent", "thanks it works now",
             "still not working, same problem", "can i speak to a human agent please",
             "i understand how frustrating this is", "password reset link sent"]
    out = []
    for i in range(n):
        turns = [("user" if k % 2 == 0 else "assistant", lines[(i + k) % len(lines)])
                 for k in range(1 + i % 7)]
        out.append(conversation(f"{prefix}{i}", *turns, agent_type=("ai", "human")[i % 2],
                                team=f"team{i % 3}"))
    return out


def write_jsonl(path: Path, items: list, extra_lines: tuple[str, ...] = ()) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items) + "".join(extra_lines))
    return path


def assert_rows_close(got: dict, want: dict, path: str = "") -> None:
    """Equal rows, numbers within 1e-4 (the batch-composition guarantee). Evidence turns are
    compared by turn: two turns of equal |contribution| (a tiny random model has such ties)
    may come in either order."""
    if isinstance(want, float) and isinstance(got, (int, float)):
        assert math.isclose(got, want, abs_tol=1e-4), f"{path}: {got} != {want}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for key in want:
            assert_rows_close(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        if ".evidence." in path:
            got, want = (sorted(x, key=lambda e: e["index"]) for x in (got, want))
        for i, (g, w) in enumerate(zip(got, want)):
            assert_rows_close(g, w, f"{path}[{i}]")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def decoded(row: dict) -> dict:
    """A scored dataset row as `qualaudit score` writes it to JSONL."""
    from qualaudit.io.scores import decoded_row

    return decoded_row({k: v for k, v in row.items() if k not in ("status", "error")}, "ray", 0)


def test_scores_match_the_single_process_scorer(local_ray, tiny_model, tiny_model_dir, tmp_path):
    items = transcripts(40)
    source = write_jsonl(tmp_path / "in.jsonl", items)
    rows = score_dataset(read_transcripts(source), tiny_model_dir, precision="fp32",
                         per_turn=True, batch_size=16).take_all()
    assert sorted(r["id"] for r in rows) == sorted(i["id"] for i in items)
    assert {r["status"] for r in rows} == {"scored"}
    expected = {r.id: r.to_dict(per_turn=True)
                for r in Auditor(tiny_model, device="cpu", precision="fp32").score(str(source))}
    for row in rows:
        assert_rows_close(decoded(row), expected[row["id"]], row["id"])


def test_every_id_exactly_once_first_by_file_and_line(local_ray, tiny_model_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", transcripts(30), ("{not json\n",))
    write_jsonl(folder / "b.jsonl", transcripts(5, "t") + transcripts(10, "u"),
                (json.dumps(conversation("u3", ("user", "again"))) + "\n",))
    rows = score_dataset(read_transcripts(folder), tiny_model_dir, precision="fp32").take_all()
    scored = [r["id"] for r in rows if r["status"] == "scored"]
    assert sorted(scored) == sorted([f"t{i}" for i in range(30)] + [f"u{i}" for i in range(10)])
    errors = sorted((json.loads(r["error"]) for r in rows if r["status"] == "rejected"),
                    key=lambda e: (e["source"], e["line"]))
    assert [(Path(e["source"]).name, e["line"], e["id"]) for e in errors] == (
        [("a.jsonl", 31, None)] + [("b.jsonl", k + 1, f"t{k}") for k in range(5)]
        + [("b.jsonl", 16, "u3")])
    assert f"first seen at {folder / 'a.jsonl'} line 1" in errors[1]["reason"]
    assert "first seen at line 9" in errors[-1]["reason"]  # within one file, as io reports it
    assert len(rows) == 30 + 1 + 15 + 1  # every record read is one output row


def test_long_rows_are_grouped_by_id_and_need_an_order(local_ray, tiny_model, tiny_model_dir):
    import pandas as pd

    frame = pd.DataFrame([{"conversation_id": f"c{i}", "turn": k, "role": role, "text": text}
                          for i in range(12) for k, (role, text) in
                          enumerate([("customer", "order not working"), ("agent", "sorry"),
                                     ("customer", f"thanks {i}")])])
    shuffled = frame.sample(frac=1.0, random_state=0)
    rows = score_dataset(ray.data.from_pandas(shuffled), tiny_model_dir,
                         precision="fp32").take_all()
    expected = {r.id: r.to_dict(per_turn=False)
                for r in Auditor(tiny_model, device="cpu", precision="fp32").score(frame)}
    assert sorted(r["id"] for r in rows) == sorted(expected)
    for row in rows:
        assert_rows_close(decoded(row), expected[row["id"]], row["id"])
    with pytest.raises(UsageError, match="order column"):
        score_dataset(ray.data.from_pandas(frame.drop(columns=["turn"])), tiny_model_dir)


def test_jsonl_shaped_rows_keep_their_own_metadata(local_ray, tiny_model, tiny_model_dir):
    items = transcripts(10)
    for i, item in enumerate(items):
        item["metadata"] = {"team": "a"} if i % 2 else {"channel": "chat", "week": i}
    items.append({"id": "t0", "messages": [{"role": "user", "content": "dup"}]})
    items.append({"id": "x", "messages": [{"role": "pilot", "content": "hello"}]})
    rows = score_dataset(ray.data.from_items(items), tiny_model_dir, precision="fp32").take_all()
    scored = {r["id"]: decoded(r) for r in rows if r["status"] == "scored"}
    expected = {r.id: r.to_dict(per_turn=False) for r in
                Auditor(tiny_model, device="cpu", precision="fp32").score(items[:10])}
    assert scored.keys() == expected.keys()  # one t0: which of the two is not defined here
    for key, row in expected.items():
        if key != "t0":
            assert_rows_close(scored[key], row, key)
    rejected = sorted(json.loads(r["error"])["field"] or "" for r in rows
                      if r["status"] == "rejected")
    assert len(rejected) == 2 and "id" in rejected  # the other t0, and the unknown role


def test_languages_rejects_other_languages_on_ray_too(local_ray, tiny_model_dir):
    german = conversation("de-1", ("customer", "Hallo, mein Paket ist nicht angekommen, bitte."),
                          ("agent", "Das tut mir leid, ich prüfe die Sendungsnummer für Sie."))
    items = [*transcripts(3), german]
    rows = score_dataset(ray.data.from_items(items), tiny_model_dir, precision="fp32",
                         languages=["en"]).take_all()
    by_id = {r["id"]: r for r in rows}
    assert [by_id[f"t{i}"]["status"] for i in range(3)] == ["scored"] * 3
    assert by_id["de-1"]["status"] == "rejected"
    assert json.loads(by_id["de-1"]["error"])["field"] == "language"


def test_a_failure_in_our_code_costs_one_error_record(local_ray, tiny_model_dir, tmp_path):
    from ray_actors import FailsOn

    source = write_jsonl(tmp_path / "in.jsonl", transcripts(20))
    rows = score_dataset(read_transcripts(source), tiny_model_dir, precision="fp32",
                         actor_class=FailsOn, bad_id="t7").take_all()
    by_id = {r["id"]: r for r in rows}
    assert len(rows) == len(by_id) == 20
    assert by_id["t7"]["status"] == "rejected"
    error = json.loads(by_id["t7"]["error"])
    assert (error["line"], "planted failure") == (8, error["reason"].split("RuntimeError: ")[1][:15])
    assert all(r["status"] == "scored" for i, r in by_id.items() if i != "t7")


def test_a_worker_killed_mid_batch_is_retried_nothing_lost(local_ray, tiny_model_dir, tmp_path):
    from ray_actors import DiesOnce

    marker = tmp_path / "died"
    source = write_jsonl(tmp_path / "in.jsonl", transcripts(50))
    rows = score_dataset(read_transcripts(source), tiny_model_dir, precision="fp32",
                         batch_size=8, actor_class=DiesOnce, marker=str(marker)).take_all()
    assert marker.exists()  # it did die once
    assert sorted(r["id"] for r in rows) == sorted(f"t{i}" for i in range(50))
    assert {r["status"] for r in rows} == {"scored"}


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_cli_writes_the_rows_qualaudit_score_writes(local_ray, tiny_model_dir, tmp_path, suffix):
    source = write_jsonl(tmp_path / "in.jsonl", transcripts(25), ("[1, 2]\n",))
    local, folder = tmp_path / f"local.{suffix}", tmp_path / f"ray.{suffix}"
    common = ["--model", str(tiny_model_dir), "--precision", "fp32", "--quiet"]
    assert main(["score", str(source), "-o", str(local), *common]) == 3
    code = main(["score", str(source), "-o", str(folder), "--engine", "ray",
                 "--errors", str(tmp_path / "err.jsonl"), *common])
    assert code == 3  # finished, with a rejected row
    parts = sorted(folder.glob("part-*"))
    assert parts and all(p.suffix == f".{suffix}" for p in parts)
    got = {r["id"]: r for p in parts for r in read_scores(p)}
    want = {r["id"]: r for r in read_scores(local)}
    assert sum(len(read_scores(p)) for p in parts) == len(got) == 25
    for key, row in want.items():
        assert_rows_close(got[key], row, key)
    (error,) = [json.loads(x) for x in (tmp_path / "err.jsonl").read_text().splitlines()]
    assert (error["line"], error["source"]) == (26, str(source))


def test_cli_refuses_what_cannot_work(local_ray, tiny_model_dir, tmp_path, capsys):
    source = write_jsonl(tmp_path / "in.jsonl", transcripts(3))
    out = tmp_path / "out"
    assert main(["score", str(source), "-o", str(out), "--engine", "ray", "--actors", "2",
                 "--model", str(tiny_model_dir), "--quiet"]) == 2
    assert "fewer --actors" in capsys.readouterr().err
    assert main(["score", str(source), "--engine", "ray", "--quiet"]) == 2
    assert main(["score", str(source), "-o", str(out), "--actors", "2"]) == 2
    assert main(["score", str(source), "-o", str(out), "--engine", "ray", "--on-error",
                 "fail"]) == 2


def test_unreachable_cluster_is_a_clear_error_fast(tmp_path, capsys):
    source = write_jsonl(tmp_path / "in.jsonl", transcripts(1))
    start = time.monotonic()
    code = subprocess.run(  # a process of its own: this one has a Ray already
        [sys.executable, "-m", "qualaudit", "score", str(source), "-o", str(tmp_path / "o"),
         "--engine", "ray", "--ray-address", "127.0.0.1:9", "--quiet"],
        capture_output=True, text=True, timeout=120)
    assert code.returncode == 2, code.stderr
    assert "cannot reach a Ray cluster at '127.0.0.1:9'" in code.stderr
    assert time.monotonic() - start < 60


def test_resume_after_the_driver_was_killed(local_ray, tiny_model_dir, tmp_path):
    items = transcripts(400)
    source = write_jsonl(tmp_path / "in.jsonl", items)
    out = tmp_path / "out"
    job = (f"from qualaudit.integrations.ray import score_files; score_files({str(source)!r}, "
           f"{str(out)!r}, {str(tiny_model_dir)!r}, address={local_ray!r}, precision='fp32', "
           "rows_per_file=20, batch_size=8)")
    driver = subprocess.Popen([sys.executable, "-c", job], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    start = time.monotonic()
    while not list(out.glob("part-*")) and driver.poll() is None and time.monotonic() < start + 180:
        time.sleep(0.05)
    exited = driver.poll()  # None: still running when killed
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    before = {r["id"] for p in out.glob("part-*") for r in read_scores(p)}
    assert 0 < len(before) < len(items), (
        f"the job was not killed mid-write: {len(before)} rows written, driver exit code {exited} "
        f"before the kill, {time.monotonic() - start:.0f} s after it started")
    summary = score_files(source, out, tiny_model_dir, resume=True, precision="fp32")
    rows = [r["id"] for p in out.glob("part-*") for r in read_scores(p)]
    assert sorted(rows) == sorted(i["id"] for i in items)  # every id exactly once
    assert summary.resumed == len(before) and summary.scored == len(items) - len(before)
    assert not list(out.glob(".tmp-*"))


def test_workers_refuse_another_qualaudit_version(tiny_model_dir):
    from qualaudit.errors import QualauditError
    from qualaudit.integrations.ray import ScoreBatches

    with pytest.raises(QualauditError, match="install the same version on every node"):
        ScoreBatches(str(tiny_model_dir), driver_version="0.0.1")


def test_without_ray_the_entry_points_say_how_to_install_it(monkeypatch):
    from qualaudit.integrations.ray import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=r'pip install "qualaudit\[ray\]"'):
        require_ray()


def test_resume_reads_complete_parts_and_deletes_unfinished_ones(tiny_model, tmp_path):
    from qualaudit.integrations.ray.files import output_folder_format, resume_state
    from qualaudit.io.writers import RowWriter

    rows = [r.to_dict(per_turn=False) for r in
            Auditor(tiny_model, device="cpu", precision="fp32").score(transcripts(6))]
    with RowWriter(tmp_path / "part-a-00000.jsonl") as writer:
        writer.write(rows[:4])
    with RowWriter(tmp_path / "part-a-00001.parquet") as writer:
        writer.write(rows[4:])
    (tmp_path / ".tmp-part-a-00002.jsonl").write_text('{"id": "t9", "resol')  # cut by a kill
    state = resume_state(tmp_path)
    assert state.ids == {f"t{i}" for i in range(6)} and state.per_turn is False
    assert list(state.models.values()) == [6]
    assert not (tmp_path / ".tmp-part-a-00002.jsonl").exists()
    with RowWriter(tmp_path / "part-b-00000.jsonl") as writer:
        writer.write(rows[:1])
    with pytest.raises(Exception, match="a second row for transcript 't0'"):
        resume_state(tmp_path)
    assert [output_folder_format(p) for p in ("out", "out.jsonl", "s.pq", "s.CSV")] == [
        "jsonl", "jsonl", "parquet", "csv"]
    with pytest.raises(UsageError, match="expected one of .jsonl"):
        output_folder_format("scores.xlsx")
