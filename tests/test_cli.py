"""The CLI end to end on temporary files: in-process via main(), and once as a real process."""

import json
import subprocess
import sys
from importlib.resources import files

import jsonschema
import pandas as pd
import pytest

from conftest import conversation
from qualaudit import __version__
from qualaudit.cli import main

ROW_SCHEMA = json.loads((files("qualaudit") / "row.schema.json").read_text())


@pytest.fixture
def input_jsonl(tmp_path, toy_transcripts):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in toy_transcripts))
    return path


def run(*args):
    return main([str(a) for a in args])


def test_score_jsonl_to_jsonl(tiny_model_dir, input_jsonl, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert run("score", input_jsonl, "-o", out, "--model", tiny_model_dir, "--quiet") == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["t1", "t2", "t3", "t4"]
    for row in rows:
        jsonschema.validate(row, ROW_SCHEMA)
        assert "turns" not in row
    summary = capsys.readouterr().err
    assert "scored 4 of 4 transcripts" in summary and "UNTRAINED" in summary
    assert "qualaudit: WARNING: qualaudit model" in summary  # the warning as one log line


def test_per_turn_and_stdout(tiny_model_dir, input_jsonl, capsys):
    assert run("score", input_jsonl, "--model", tiny_model_dir, "--per-turn", "--quiet") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 4 and len(rows[1]["turns"]) == 5
    assert [row["agent_type"] for row in rows] == ["ai", "ai", "human", "human"]
    for row in rows:  # agent turns take the transcript's agent_type, customer turns none
        assert {(t["role"], t["agent_type"]) for t in row["turns"]} <= {
            ("customer", None), ("agent", row["agent_type"])}
    assert [t["agent_type"] for t in rows[3]["turns"]] == ["human", None, "human"]


def test_csv_and_parquet_outputs_have_the_same_columns(tiny_model_dir, input_jsonl, tmp_path):
    assert run("score", input_jsonl, "-o", tmp_path / "o.csv", "--model", tiny_model_dir, "--quiet") == 0
    assert run("score", input_jsonl, "-o", tmp_path / "o.parquet", "--model", tiny_model_dir, "--quiet") == 0
    assert run("score", input_jsonl, "-o", tmp_path / "o.jsonl", "--model", tiny_model_dir, "--quiet") == 0
    csv = pd.read_csv(tmp_path / "o.csv")
    parquet = pd.read_parquet(tmp_path / "o.parquet")
    jsonl = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    # the flat tables add one column per metadata key after the row's own
    flattened = [f"metadata.{k}" for k in dict.fromkeys(k for r in jsonl for k in r["metadata"])]
    assert list(csv.columns) == list(parquet.columns) == list(jsonl[0]) + flattened
    assert list(csv["resolution"]) == pytest.approx([r["resolution"] for r in jsonl])
    assert list(parquet["resolution"]) == pytest.approx([r["resolution"] for r in jsonl])
    assert json.loads(csv["resolution_dist"][0]) == pytest.approx(jsonl[0]["resolution_dist"])
    assert json.loads(parquet["evidence"][1]) == jsonl[1]["evidence"]


def test_long_table_with_explicit_columns(tiny_model_dir, tmp_path):
    table = tmp_path / "turns.csv"
    pd.DataFrame({"conv": ["a", "a", "b"], "who": ["user", "assistant", "user"],
                  "body": ["my order", "sorry about that", "hello"], "n": [1, 2, 1]}).to_csv(table, index=False)
    out = tmp_path / "out.jsonl"
    code = run("score", table, "-o", out, "--model", tiny_model_dir, "--quiet", "--id-column", "conv",
               "--role-column", "who", "--text-column", "body", "--order-column", "n")
    assert code == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b"]


def test_rejected_rows_exit_3_and_the_rest_is_scored(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    secret = "SECRET-CARD-4111"
    lines = [json.dumps(conversation("ok1", ("user", "hello"))), "{not json",
             json.dumps(conversation("bad-role", ("visitor", secret))),
             json.dumps(conversation("ok1", ("user", "duplicate"))),
             json.dumps(conversation("ok2", ("user", "hi")))]
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    assert run("score", path, "-o", out, "--model", tiny_model_dir, "--quiet") == 3
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["ok1", "ok2"]
    err = capsys.readouterr().err
    assert "scored 2 of 5 transcripts" in err and "rejected 3" in err
    assert "line 2" in err and "line 3" in err and "line 4" in err
    assert secret not in err


@pytest.mark.parametrize("args", [
    ["score", "missing.jsonl"],
    ["score", "{input}", "-o", "out.txt"],
    ["score", "{input}", "--precision", "fp8"],
    ["score"],
    ["score", "{input}", "--max-batch-tokens", "0"],
    ["score", "{input}", "--top-evidence", "-1"],
    ["score", "{input}", "--device", "gpu9"],
    ["score", "{input}", "-o", "no/such/dir/out.jsonl"],
    ["score", "{input}", "-o", "{input}"],
    ["score", "{input}", "-o", "."],
    ["frobnicate"],
])
def test_usage_errors_exit_2(args, input_jsonl, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = input_jsonl.read_bytes()
    assert run(*[a.format(input=input_jsonl) for a in args]) == 2
    assert input_jsonl.read_bytes() == before  # never touched


def test_ambiguous_table_is_a_usage_error(tiny_model_dir, tmp_path, capsys):
    table = tmp_path / "t.csv"
    pd.DataFrame({"conversation_id": ["a"], "role": ["user"], "text": ["hi"], "message": ["hi"]}).to_csv(table, index=False)
    assert run("score", table, "--model", tiny_model_dir, "--quiet") == 2
    err = capsys.readouterr().err
    assert "message" in err and "text" in err and "--text-column" in err


def test_a_gzip_file_named_jsonl_is_one_usage_error(tiny_model_dir, input_jsonl, tmp_path, capsys):
    import gzip

    packed = tmp_path / "x.jsonl"
    packed.write_bytes(gzip.compress(input_jsonl.read_bytes()))
    out = tmp_path / "out.jsonl"
    assert run("score", packed, "-o", out, "--model", tiny_model_dir, "--quiet") == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("qualaudit: error:")]
    assert str(packed) in line and "found gzip-compressed data" in line and "gunzip" in line
    assert "invalid UTF-8" not in err and "iconv" not in err
    assert not out.exists()


def test_every_wrongly_named_column_is_in_one_usage_error(tiny_model_dir, tmp_path, capsys):
    table = tmp_path / "t.csv"
    pd.DataFrame({"ticket": ["a"], "who": ["user"], "words": ["hi"]}).to_csv(table, index=False)
    assert run("score", table, "--model", tiny_model_dir, "--quiet") == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert "3 columns cannot be told" in line and str(table) in line
    assert all(f"no {name} column" in line for name in ("id", "role", "text"))
    assert all(f"--{name}-column" in line for name in ("id", "role", "text"))
    assert "columns found: ['ticket', 'who', 'words']" in line
    assert run("score", table, "--model", tiny_model_dir, "--quiet", "--id-column", "ticket",
               "--text-column", "nope") == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert "2 columns cannot be told" in line and "no role column" in line
    assert "column 'nope' (ColumnMap.text) not found" in line
    assert "--role-column" in line and "--text-column" in line and "--id-column" not in line


@pytest.mark.parametrize("name, text", [("empty.jsonl", ""), ("blank.jsonl", "\n\n"),
                                        ("header.csv", "conversation_id,role,text\n")])
def test_an_input_without_transcripts_is_a_usage_error(tiny_model_dir, tmp_path, capsys, name,
                                                      text):
    source, out = tmp_path / name, tmp_path / "out.jsonl"
    source.write_text(text)
    assert run("score", source, "-o", out, "--model", tiny_model_dir, "--quiet") == 2
    err = capsys.readouterr().err
    assert f"qualaudit: error: {source}: no transcripts found; expected one JSON object" in err
    assert "scored 0 of 0" not in err and not out.exists()


def test_missing_model_fails(input_jsonl, tmp_path):
    assert run("score", input_jsonl, "--model", tmp_path / "no-model", "--quiet") == 1


def test_version(capsys):
    assert run("--version") == 0 and __version__ in capsys.readouterr().out


def test_init_builds_an_untrained_model(tiny_encoder_dir, tmp_path, capsys):
    assert run("init", tmp_path / "m", "--encoder", tiny_encoder_dir) == 0
    assert "UNTRAINED" in (tmp_path / "m" / "README.md").read_text()


def test_real_process_with_progress_and_exit_code(tiny_model_dir, input_jsonl, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "qualaudit", "score", str(input_jsonl), "-o", str(out),
                           "--model", str(tiny_model_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 4
    assert "scored 4 of 4" in proc.stderr and proc.stdout == ""
    assert "tokens/s, 0 rejected]" in proc.stderr  # the progress bar's postfix


@pytest.mark.parametrize("name", ["in.jsonl", "in.csv"])
def test_progress_bar_counts_bytes_of_the_input_file(tiny_model_dir, toy_transcripts, tmp_path,
                                                     capsys, name):
    source = tmp_path / name
    if name.endswith(".jsonl"):
        source.write_text("".join(json.dumps(t) + "\n" for t in toy_transcripts))
    else:
        pd.DataFrame({"chat_id": ["a", "a", "b"], "role": ["user", "agent", "user"],
                      "text": ["my order", "sorry", "hi"]}).to_csv(source, index=False)
    from tqdm import tqdm

    shown = tqdm.format_sizeof(source.stat().st_size)  # as the bar writes the size
    out = tmp_path / "out.jsonl"
    assert run("score", source, "-o", out, "--model", tiny_model_dir) == 0
    err = capsys.readouterr().err
    n = len(out.read_text().splitlines())
    assert "100%" in err and f"{shown}/{shown}" in err and "B/s" in err
    assert f"{n} transcripts, " in err and "tokens/s, 0 rejected]" in err
    assert run("score", source, "-o", out, "--model", tiny_model_dir, "--quiet") == 0
    err = capsys.readouterr().err
    assert "100%" not in err and "tokens/s, 0 rejected]" not in err and f"scored {n} of {n}" in err


def test_a_closed_pipe_stops_quietly(tiny_model_dir, tmp_path):
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps(conversation(f"p{i}", ("user", "hello"), ("assistant", "hi")))
                            + "\n" for i in range(3000)))
    proc = subprocess.run(f"{sys.executable} -m qualaudit score {many} --model {tiny_model_dir} "
                          "--quiet | head -1", shell=True, capture_output=True, text=True, timeout=300)
    assert json.loads(proc.stdout)["id"] == "p0"
    assert "Traceback" not in proc.stderr and "broken pipe" in proc.stderr


def test_output_inside_or_linked_to_the_input_is_refused(tiny_model_dir, input_jsonl, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "utterances.jsonl").write_text(json.dumps(
        {"id": "u1", "speaker": "user", "conversation_id": "c1", "reply_to": None, "text": "hi"}) + "\n")
    before = (corpus / "utterances.jsonl").read_bytes()
    assert run("score", corpus, "-o", corpus / "utterances.jsonl", "--model", tiny_model_dir) == 2
    assert (corpus / "utterances.jsonl").read_bytes() == before
    linked = tmp_path / "linked.jsonl"
    linked.hardlink_to(input_jsonl)
    before = input_jsonl.read_bytes()
    assert run("score", input_jsonl, "-o", linked, "--model", tiny_model_dir) == 2
    assert input_jsonl.read_bytes() == before


# ----------------------------------------------------------------- never lose, never leak
def complete_rows(path):
    """The rows of a JSONL output; fails on a partial or broken line."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "the output ends with a partial line"
    return [json.loads(line) for line in data.decode().splitlines()]


def start_scoring(source, out, model, *extra):
    return subprocess.Popen([sys.executable, "-m", "qualaudit", "score", str(source), "-o", str(out),
                             "--model", str(model), "--quiet", *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_by_default)


def _sigint_by_default() -> None:
    """A test run started in the background of a shell without job control inherits SIGINT
    ignored, as `nohup cmd &` wants; the child that these tests interrupt must not."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_rows(proc, out, at_least, timeout=120):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= at_least:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("no rows written in time")


@pytest.fixture
def big_input(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(conversation(f"k{i}", ("user", "my order"),
                                                    ("assistant", "sorry about that"))) + "\n"
                            for i in range(2000)))
    return path


def test_sigkill_then_resume_gives_every_id_exactly_once(tiny_model_dir, big_input, tmp_path, capsys):
    import signal

    out = tmp_path / "out.jsonl"
    proc = start_scoring(big_input, out, tiny_model_dir, "--chunk-turns", 2)
    try:
        wait_for_rows(proc, out, 3)
        # a second process on the same output is refused while the first one writes it
        assert run("score", big_input, "-o", out, "--model", tiny_model_dir, "--quiet",
                   "--resume") == 1
        assert "another process" in capsys.readouterr().err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = complete_rows(out)
    assert 3 <= len(before) < 2000  # some but not all
    # a kill in the middle of a write leaves half a row: simulate one after the last row
    with out.open("ab") as handle:
        handle.write(b'{"id": "k' + str(len(before)).encode() + b'", "agent_type": "a')
    assert run("score", big_input, "-o", out, "--model", tiny_model_dir, "--quiet", "--resume") == 0
    rows = complete_rows(out)
    assert [r["id"] for r in rows] == [f"k{i}" for i in range(2000)]  # each once, in order
    assert rows[: len(before)] == before  # the rows written before are kept as they were
    err = capsys.readouterr().err
    assert "dropping a partial last line" in err
    assert f"2000 read = {2000 - len(before)} scored + {len(before)} already in the output + 0 rejected" in err


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_an_interrupted_run_stops_cleanly_with_a_valid_output(tiny_model_dir, big_input, tmp_path,
                                                              signame, capsys):
    import signal

    out = tmp_path / "out.jsonl"
    proc = start_scoring(big_input, out, tiny_model_dir, "--chunk-turns", 2)
    try:
        wait_for_rows(proc, out, 2)
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    before = complete_rows(out)
    assert 2 <= len(before) < 2000
    if signame == "SIGINT":  # resuming after a kill is tested above; once more is enough
        assert run("score", big_input, "-o", out, "--model", tiny_model_dir, "--quiet",
                   "--resume") == 0
        assert [r["id"] for r in complete_rows(out)] == [f"k{i}" for i in range(2000)]


def test_errors_file_accounts_and_on_error(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([json.dumps(conversation("a", ("user", "hello"))), "{broken",
                               json.dumps(conversation("b", ("user", "hi")))]) + "\n")
    out, errors = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    assert run("score", path, "-o", out, "--errors", errors, "--model", tiny_model_dir,
               "--quiet") == 3
    err = capsys.readouterr().err
    assert f"rejected 1 (listed in {errors})" in err
    assert "accounts: 3 read = 2 scored + 0 already in the output + 1 rejected" in err
    assert [json.loads(line)["line"] for line in errors.read_text().splitlines()] == [2]
    assert run("score", path, "-o", out, "--errors", errors, "--model", tiny_model_dir,
               "--quiet", "--on-error", "fail") == 1
    err = capsys.readouterr().err
    assert "stopped at the first rejected transcript" in err and "line 2" in err
    assert [r["id"] for r in complete_rows(out)] == ["a"]
    assert run("score", path, "-o", out, "--errors", errors, "--model", tiny_model_dir,
               "--quiet", "--resume") == 3
    assert [r["id"] for r in complete_rows(out)] == ["a", "b"]


@pytest.mark.parametrize("args, message", [
    (["--resume"], "--resume needs a JSONL output file"),
    (["-o", "{tmp}/o.csv", "--resume"], "--resume needs a JSONL output file"),
    (["-o", "{tmp}/o.jsonl", "--errors", "{tmp}/o.jsonl"], "errors file must not be the output"),
    (["-o", "{tmp}/o.jsonl", "--errors", "{input}"], "errors file"),
    (["-o", "{tmp}/o.jsonl", "--errors", "{tmp}/no/err.jsonl"], "folder that does not exist"),
    (["--on-error", "ignore"], "invalid choice"),
    (["--max-turns", "-1"], "expected an integer >= 0"),
])
def test_conflicting_options_are_usage_errors(args, message, input_jsonl, tmp_path, capsys):
    before = input_jsonl.read_bytes()
    filled = [a.format(tmp=tmp_path, input=input_jsonl) for a in args]
    assert run("score", input_jsonl, *filled) == 2
    assert message in capsys.readouterr().err
    assert input_jsonl.read_bytes() == before
    assert not (tmp_path / "o.jsonl").exists()


def test_resume_at_another_precision_is_a_usage_error(tiny_model_dir, input_jsonl, tmp_path,
                                                      capsys):
    out = tmp_path / "out.jsonl"
    assert run("score", input_jsonl, "-o", out, "--model", tiny_model_dir, "--quiet",
               "--precision", "fp32") == 0
    assert {json.loads(line)["model"]["precision"] for line in out.read_text().splitlines()} == {
        "fp32"}
    before = out.read_bytes()
    assert run("score", input_jsonl, "-o", out, "--model", tiny_model_dir, "--resume",
               "--precision", "bf16") == 2
    err = capsys.readouterr().err
    assert "precision 'fp32'" in err and "--precision fp32" in err and out.read_bytes() == before
    assert run("score", input_jsonl, "-o", out, "--model", tiny_model_dir, "--resume",
               "--precision", "fp32", "--quiet") == 0


def test_help_says_what_the_tool_does_and_starts_without_torch():
    code = ("import sys, contextlib, io\n"
            "from qualaudit.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    main(['--help'])\n"
            "print(out.getvalue())\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Audit customer-support conversations" in done.stdout
    assert "developer" not in done.stdout and "thin subcommands" not in done.stdout
    assert done.stdout.strip().endswith("False False")


def test_resume_with_another_model_is_a_usage_error(tiny_model_dir, tiny_encoder_dir, input_jsonl,
                                                    tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert run("score", input_jsonl, "-o", out, "--model", tiny_model_dir, "--quiet") == 0
    assert run("init", tmp_path / "other", "--encoder", tiny_encoder_dir, "--seed", 1) == 0
    before = out.read_bytes()
    assert run("score", input_jsonl, "-o", out, "--model", tmp_path / "other", "--resume") == 2
    assert "--allow-mixed-models" in capsys.readouterr().err and out.read_bytes() == before
    assert run("score", input_jsonl, "-o", out, "--model", tmp_path / "other", "--resume",
               "--allow-mixed-models", "--quiet") == 0


def test_logs_and_errors_never_hold_transcript_text(tiny_model_dir, tmp_path, capsys, caplog):
    import logging

    secret = "zebra-quartz-{}"
    items = [
        conversation("ok", ("user", secret.format(1)), ("assistant", secret.format(2))),
        conversation("role", ("visitor", secret.format(3))),
        conversation("card-role", ("4111 1111 1111 1111", secret.format(4))),
        conversation("meta", ("user", secret.format(5)), metadata={"x": float("inf")}),
        conversation("ok", ("user", secret.format(6))),
        conversation("mega", ("user", secret.format(7) + " word" * 250_000),
                     ("assistant", secret.format(8))),
        conversation("long", *[("user", secret.format(9))] * 1500),
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(i, allow_nan=True) + "\n" for i in items) + "{" + secret.format(10) + "\n")
    errors = tmp_path / "err.jsonl"
    with caplog.at_level(logging.DEBUG):
        code = run("score", path, "-o", tmp_path / "out.jsonl", "--errors", errors,
                   "--model", tiny_model_dir, "--redact")
    assert code == 3
    captured = capsys.readouterr()
    logs = captured.err + captured.out + caplog.text + errors.read_text()
    assert "zebra" not in logs and "quartz" not in logs
    assert "4111" not in captured.err and "4111" not in errors.read_text()
    assert "rejected 5" in captured.err and "2 truncated" in captured.err


def test_default_precision_is_recorded_and_csv_cells_are_guarded(tiny_model_dir, tmp_path):
    import torch

    from qualaudit.scorer import native_bf16

    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(conversation("=1+1", ("user", "hi"), ("assistant", "hello"),
                                              team="@ops", queue=-3)) + "\n")
    assert run("score", source, "-o", tmp_path / "o.jsonl", "--model", tiny_model_dir,
               "--device", "cpu", "--quiet") == 0
    row = json.loads((tmp_path / "o.jsonl").read_text())
    assert row["model"]["precision"] == ("bf16" if native_bf16(torch.device("cpu")) else "fp32")
    assert row["schema_version"] == "1.2"
    assert run("score", source, "-o", tmp_path / "o.csv", "--model", tiny_model_dir,
               "--device", "cpu", "--quiet") == 0
    table = pd.read_csv(tmp_path / "o.csv", dtype=str)
    assert table["id"][0] == "'=1+1" and table["metadata.team"][0] == "'@ops"
    assert table["metadata.queue"][0] == "-3"
