"""`qualaudit` command line: thin subcommands over library functions; only this module prints
and exits. Exit codes: 0 every input scored, 1 the run failed, 2 usage error, 3 finished with
rejected rows.

A subcommand is a function `(args) -> int` set with `set_defaults(func=...)`; `run_command`
runs it with the shared plumbing (log lines on stderr with personal data redacted, Ctrl-C and
SIGTERM as a clean stop, errors to exit codes through `exit_code_for`), and it returns
`exit_code(summary)` (0 or 3) when it finishes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import InputError, QualauditError, UsageError
from .redact import redact_text

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an error that stopped a subcommand: 2 when the call itself is wrong
    (bad arguments, an unreadable source, options that conflict with the files), 1 when the
    run failed (a model that cannot be loaded, a locked output, a rejected row under
    --on-error fail, an I/O error, an interruption)."""
    return EXIT_USAGE if isinstance(exc, (InputError, UsageError)) else EXIT_FAILED


def exit_code(summary: Any) -> int:
    """The exit code of a subcommand that finished: 3 when it rejected rows, else 0."""
    return EXIT_REJECTED if summary.rejected else EXIT_OK


def error(message: str) -> None:
    """An error line on stderr, personal data redacted (messages quote short input values)."""
    print(f"qualaudit: error: {redact_text(message)}", file=sys.stderr)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep the code explicit
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, found {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, found {value}")
        return value
    return parse


def _device(text: str) -> str:
    if text == "auto":
        return text
    import torch

    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"expected auto, cpu, cuda or cuda:N, found {text!r}") from None
    return text


DESCRIPTION = """\
Audit customer-support conversations, handled by AI assistants and human agents alike. For
every transcript, `qualaudit score` gives calibrated probabilities of resolution,
satisfaction, repeat inquiry and escalation (and from which turn), a graded empathy score,
and the turns behind each score. `train`, `calibrate` and `evaluate` adapt the model to
your own QA labels and measure how far it agrees with them."""

EPILOG = """\
examples:
  qualaudit score chats.jsonl -o scores.jsonl          # the bundled model
  qualaudit score tickets.csv -o scores.csv --per-turn --errors rejected.jsonl
  qualaudit evaluate scores.jsonl qa_labels.csv

exit codes: 0 every input scored, 1 the run failed, 2 usage or input error,
3 finished with rejected transcripts. `qualaudit COMMAND --help` for each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qualaudit", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"qualaudit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    score = sub.add_parser("score", help="score transcripts, one output row per transcript")
    score.add_argument("input", help="JSONL, CSV, Parquet, or a ConvoKit corpus directory")
    score.add_argument("-o", "--output",
                       help="output .jsonl/.csv/.tsv/.parquet (default: JSONL on stdout)")
    score.add_argument("--model", help="model directory or hub id (default: the bundled model)")
    score.add_argument("--device", default="auto", type=_device, help="auto (CUDA when present), cpu, cuda, cuda:1")
    score.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                       help="auto (default): bf16 where the hardware runs it natively (a GPU "
                            "with bf16, a CPU with AVX-512 BF16 or AMX), fp32 elsewhere; fp32: "
                            "the same scores everywhere; bf16: a bfloat16 copy of the encoder "
                            "(moves scores by up to about 0.02). Rows record the one used")
    score.add_argument("--quantize", choices=["int8"],
                       help="int8: the encoder's Linear layers with torch dynamic int8 "
                            "quantization (CPU only; scores move: see the README)")
    score.add_argument("--max-batch-tokens", type=_count(1), metavar="N",
                       help="padded tokens per encoder batch (default 8192 on CPU, 65536 on CUDA)")
    score.add_argument("--top-evidence", type=_count(0), default=3, metavar="K",
                       help="evidence turns per target (default 3)")
    score.add_argument("--per-turn", action="store_true", help="include per-turn outputs (`turns`)")
    score.add_argument("--format", default="auto",
                       choices=["auto", "jsonl", "csv", "tsv", "parquet", "convokit"], help="input format")
    for name in ("id", "role", "text", "order", "agent-type"):
        score.add_argument(f"--{name}-column", metavar="NAME",
                           help=f"long tables: the {name.replace('-', ' ')} column (default: detected)")
    score.add_argument("--role-map", metavar="MAP",
                       help="extra role names, e.g. customer=visitor,agent=operator")
    score.add_argument("--resume", action="store_true",
                       help="keep the rows already in OUTPUT (JSONL) and score only the "
                            "transcripts without one; a partial last line is dropped")
    score.add_argument("--allow-mixed-models", action="store_true",
                       help="with --resume: add rows to an output another model wrote")
    score.add_argument("--errors", metavar="ERR.jsonl",
                       help="write each rejected transcript (file, line, id, field, reason; "
                            "never its text) to this JSONL file")
    score.add_argument("--on-error", choices=["skip", "fail"], default="skip",
                       help="on a rejected transcript: skip it and go on (exit 3 at the end; "
                            "default), or stop (exit 1)")
    score.add_argument("--redact", action="store_true",
                       help="replace emails, phone, card and IBAN numbers in the text the "
                            "rows echo (metadata values)")
    score.add_argument("--chunk-turns", type=_count(1), default=2048, metavar="N",
                       help="turns per chunk; each chunk's rows are written and synced "
                            "to disk together (default 2048)")
    score.add_argument("--max-turns", type=_count(0), default=1000, metavar="N",
                       help="score at most N turns of a transcript, its first and last N/2 "
                            "(default 1000; 0 = no limit); recorded in `truncated`")
    score.add_argument("--languages", type=_names, metavar="CODES",
                       help="reject (as --on-error says) transcripts detected in another "
                            "language, e.g. en or en,fr; without it they are scored with a "
                            "warning when the model was not trained on their language")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    on_ray = score.add_argument_group(
        "Ray (pip install \"qualaudit[ray]\")",
        "--engine ray reads files or folders of files and writes OUTPUT as a folder of part "
        "files, in the format its name says (OUT.parquet/, OUT.csv/; JSONL otherwise), rows in "
        "no particular order; --resume finishes a stopped job")
    on_ray.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local (default): this process; ray: a Ray Data job")
    on_ray.add_argument("--ray-address", metavar="ADDR",
                        help="the cluster to run on (HOST:6379, ray://HOST:10001; default: a new "
                             "local Ray, or RAY_ADDRESS)")
    on_ray.add_argument("--actors", type=_count(1), default=1, metavar="N",
                        help="scoring actors, each with its own copy of the model (default 1)")
    on_ray.add_argument("--gpus-per-actor", type=float, default=0.0, metavar="G",
                        help="GPUs per actor (default 0: CPU actors of one CPU each)")
    score.set_defaults(func=_score)

    init = sub.add_parser("init", help="build an UNTRAINED model on an encoder (pipeline tests)")
    init.add_argument("directory")
    init.add_argument("--encoder", default="minilm",
                      help="HF encoder path or hub id; 'minilm' = the packaged MiniLM-L6")
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(func=_init)

    train = sub.add_parser("train", help="train a model on the public datasets, or fine-tune on your own labels")
    train.add_argument("-o", "--output", required=True, help="directory to write the model to")
    _add_label_sources(train)
    train.add_argument("--init", help="encoder ('minilm', a path or hub id) or a qualaudit model "
                       "directory to start from (default: minilm with --data-dir, the bundled "
                       "model with --labels)")
    train.add_argument("--heads", type=_names, metavar="A,B",
                       help="targets to train, e.g. resolution,escalation (default: every labelled one)")
    train.add_argument("--freeze-encoder", action="store_true", help="train the heads only (small label sets)")
    train.add_argument("--reads-only", action="store_true",
                       help="with --freeze-encoder: train only what --last-turns / --echo add, "
                            "every other weight kept")
    train.add_argument("--refit-heads", action="store_true",
                       help="replace the --init model's conversation heads with new ones and train "
                            "only them, every other weight frozen (they transfer better)")
    train.add_argument("--max-train-tokens", type=_count(1), metavar="N",
                       help="encoder tokens to train on (default 2,200,000)")
    train.add_argument("--max-epochs", type=_count(1), metavar="N", help="passes over the data (default 4)")
    train.add_argument("--context-layers", type=_count(0), metavar="N",
                       help="causal transformer layers over the turn states (default: the "
                            "model's own; none for a new model)")
    train.add_argument("--last-turns", type=_names, metavar="A,B",
                       help="targets whose heads also read the last customer and agent turns, "
                            "e.g. repeat_inquiry (default: the model's own; none for a new model)")
    train.add_argument("--echo", type=_names, metavar="A,B",
                       help="per-turn targets whose heads, or escalation whose turn inputs, also "
                            "read how much their turn repeats an earlier one of its role, e.g. "
                            "breakdown,escalation (default: the model's own; none for a new model)")
    train.add_argument("--reading", choices=["turns", "conversation", "conversation_causal"],
                       help="encode each turn in its own window, or the conversation as text in "
                            "chunks, where with conversation_causal a turn reads only itself and "
                            "the turns before it (default: the model's own; turns for a new model)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu", type=_device)
    train.add_argument("--calibration", choices=["temperature", "affine", "isotonic"],
                       default="temperature")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    calibrate = sub.add_parser("calibrate", help="refit only a model's calibration on labelled data")
    calibrate.add_argument("model", help="model directory")
    calibrate.add_argument("-o", "--output", required=True,
                           help="directory for the recalibrated model (may be MODEL itself)")
    _add_label_sources(calibrate)
    calibrate.add_argument("--heads", type=_names, metavar="A,B",
                           help="targets to recalibrate, e.g. breakdown,escalation (default: "
                                "every labelled one); the others keep their calibration")
    calibrate.add_argument("--method", choices=["temperature", "affine", "isotonic"],
                           default="temperature")
    calibrate.set_defaults(func=_calibrate)

    evaluate = sub.add_parser("evaluate", help="agreement of scores with your own QA labels")
    evaluate.add_argument("scores", help="output of `qualaudit score`, or raw transcripts to score first")
    evaluate.add_argument("labels", help="labels file (CSV, TSV or JSONL; see the README)")
    evaluate.add_argument("--model", help="model for raw transcripts (default: the bundled model)")
    evaluate.add_argument("--threshold", type=float, default=0.5, help="decision threshold (default 0.5)")
    evaluate.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    evaluate.set_defaults(func=_evaluate)

    report = sub.add_parser("report", help="audit report over score files: cohorts, AI vs human "
                            "like for like, trends and alerts, two versions compared, triage")
    report.add_argument("scores", nargs="*", help="score files written by `qualaudit score` "
                        "(JSONL, CSV, TSV, Parquet)")
    report.add_argument("--json", metavar="PATH", help="write the report as JSON (every table)")
    report.add_argument("--markdown", metavar="PATH", help="write the report as Markdown")
    report.add_argument("--html", metavar="PATH", help="write the report as one self-contained "
                        "HTML file (charts as static SVG; no script)")
    report.add_argument("--csv", metavar="DIR", help="write the main tables as CSV files in DIR "
                        "(text cells formula-guarded)")
    report.add_argument("--by", type=_names, default=["agent_type"], metavar="A,B",
                        help="cohort keys: agent_type and any metadata key (default agent_type)")
    report.add_argument("--strata", metavar="KEY", help="metadata key for the like-for-like AI "
                        "vs human strata (default: topic clusters of --transcripts)")
    report.add_argument("--transcripts", metavar="FILE", help="the transcripts scored: text of "
                        "the triage evidence turns, topic strata, escalation timing")
    report.add_argument("--over", choices=["day", "week", "month"],
                        help="trends per period, with decline alerts")
    report.add_argument("--tz", metavar="ZONE", help="time zone of the periods (default UTC)")
    report.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="two score files of the same transcripts: paired differences B - A")
    report.add_argument("--threshold", type=_assignments, action="extend", default=[],
                        metavar="TARGET=X", help="decision threshold per target, e.g. "
                        "escalation=0.7 (default 0.5); repeat or separate with commas")
    report.add_argument("--labels", metavar="FILE", help="your QA labels: adds the agreement section")
    report.add_argument("--reference-mix", type=_assignments, metavar="STRATUM=W,...",
                        help="reference mix for the adjusted difference (default: pooled)")
    report.add_argument("--no-redact", action="store_true",
                        help="show transcript text and cohort values as they are (default: "
                        "personal data redacted)")
    report.add_argument("--queue-size", type=_count(1), default=20, metavar="N",
                        help="conversations listed per triage queue (default 20)")
    report.add_argument("--clusters", type=_count(1), default=8, metavar="K",
                        help="topic clusters for the strata (default 8)")
    report.add_argument("--seed", type=int, default=0)
    report.add_argument("--n-boot", type=_count(100), default=1000, metavar="N",
                        help="bootstrap resamples (default 1000)")
    report.add_argument("--title", help="a line under the report's heading (say what the data is)")
    report.add_argument("--quiet", action="store_true", help="no progress lines")
    report.set_defaults(func=_report)
    return parser


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, found {text!r}")
    return names


def _add_label_sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="public datasets laid out as ../shared/data (their dev split is used)")
    parser.add_argument("--sources", type=_names, metavar="A,B",
                        help="with --data-dir: only these sources (stc3, uss, epitome, bitext, dbdc3)")
    parser.add_argument("--transcripts", help="your transcripts (any input `qualaudit score` reads)")
    parser.add_argument("--labels", help="your labels for them (CSV, TSV or JSONL; see the README)")


def _labelled(args: argparse.Namespace):
    """The examples named by --data-dir or --transcripts/--labels (exactly one of them)."""
    from .training.datasets import load_examples
    from .training.datasets.user import user_examples

    if bool(args.data_dir) == bool(args.labels) or bool(args.labels) != bool(args.transcripts):
        raise UsageError("give --data-dir, or --transcripts with --labels")
    if args.data_dir:
        try:
            return load_examples(args.data_dir, args.sources)
        except ValueError as exc:  # an unknown source name
            raise UsageError(str(exc)) from None
    return user_examples(args.transcripts, args.labels)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors, --help, --version: report the code, not raise
        return int(exc.code or 0)
    return run_command(args.func, args)


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand with the shared plumbing and turn what stops it into an exit code."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our own bar is the one that matters
    handler = logging.StreamHandler(sys.stderr)  # stderr as it is now (tests swap it)
    handler.setFormatter(_RedactingFormatter("qualaudit: %(levelname)s: %(message)s"))
    logger = logging.getLogger("qualaudit")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    main_thread = threading.current_thread() is threading.main_thread()
    previous_term = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        with warnings.catch_warnings():  # warnings as one log line each, not Python's two
            warnings.showwarning = lambda message, *_args, **_kw: logger.warning("%s", message)
            return func(args)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, not with a trace
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("qualaudit: output closed early (broken pipe); stopped", file=sys.stderr)
        return EXIT_FAILED
    except (QualauditError, OSError) as exc:
        error(str(exc))
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("qualaudit: interrupted", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous_term)
        logger.removeHandler(handler)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops a run the way Ctrl-C does: outputs closed, each ending with a complete row."""
    raise KeyboardInterrupt


def _path_problem(path: str, source: Path) -> str | None:
    """Why `path` cannot be written by a run reading `source`, or None."""
    target = Path(path).resolve()
    overwrites_input = (target == source or (source.is_dir() and target.is_relative_to(source))
                        or (target.exists() and os.path.samefile(target, source)))
    return ("is (or is inside) the input: scoring would overwrite it" if overwrites_input
            else "is a directory" if target.is_dir()
            else "is in a folder that does not exist" if not target.parent.is_dir()
            else None)


def _columns(args: argparse.Namespace) -> Any:
    """The long-table columns named by --id-column, --role-column, ... (None: detected)."""
    from .io import ColumnMap

    return ColumnMap(id=args.id_column, role=args.role_column, text=args.text_column,
                     order=args.order_column, agent_type=args.agent_type_column)


def _paths_problem(args: argparse.Namespace, *, folder_output: bool) -> str | None:
    """Why `score`'s input, output and errors paths cannot work, or None. `folder_output`:
    the output is a folder (--engine ray), so an existing directory is fine."""
    if not Path(args.input).exists():
        return f"input {args.input!r} does not exist"
    source = Path(args.input).resolve()
    for name, path in (("output", args.output), ("errors file", args.errors)):
        problem = path and _path_problem(path, source)
        if problem and not (folder_output and name == "output" and problem == "is a directory"):
            return f"{name} {path!r} {problem}"
    if args.output and args.errors and Path(args.output).resolve() == Path(args.errors).resolve():
        return "the errors file must not be the output"
    return None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _score(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        return _score_on_ray(args)
    if args.ray_address or args.actors != 1 or args.gpus_per_actor:
        error("--ray-address, --actors and --gpus-per-actor go with --engine ray")
        return EXIT_USAGE
    from tqdm import tqdm

    from .errors import RejectedRowError
    from .io.writers import output_format
    from .pipeline import score_to_file
    from .scorer import Auditor

    try:
        fmt = output_format(args.output)
    except ValueError as exc:
        error(str(exc))
        return EXIT_USAGE
    problem = _paths_problem(args, folder_output=False)
    if problem:
        error(problem)
        return EXIT_USAGE
    if args.resume and (not args.output or fmt != "jsonl"):
        error("--resume needs a JSONL output file (-o OUT.jsonl)")
        return EXIT_USAGE
    if args.quantize and args.precision == "bf16":
        error("--quantize int8 replaces the encoder's Linear layers; it goes with --precision "
              "fp32, not bf16")
        return EXIT_USAGE
    if args.quantize and (args.device.startswith("cuda") or (args.device == "auto"
                                                             and _cuda_available())):
        error("--quantize int8 runs on the CPU only (torch dynamic quantization): add "
              "--device cpu, or use --precision bf16 on the GPU")
        return EXIT_USAGE
    device = None if args.device == "auto" else args.device
    auditor = Auditor.from_pretrained(args.model, device=device, precision=args.precision,
                                      quantize=args.quantize,
                                      max_batch_tokens=args.max_batch_tokens,
                                      top_evidence=args.top_evidence,
                                      chunk_turns=args.chunk_turns,
                                      max_turns=args.max_turns or None)
    bar = tqdm(unit="B", unit_scale=True, file=sys.stderr, disable=args.quiet,  # bytes read
               dynamic_ncols=True)

    written = [0]  # rows written so far (the bar counts nothing when --quiet)

    def progress(summary) -> None:
        written[0] = summary.scored
        _show_progress(bar, summary)

    try:
        with bar:
            summary = score_to_file(
                args.input, args.output, auditor, format=args.format, columns=_columns(args),
                role_map=args.role_map, per_turn=args.per_turn, resume=args.resume,
                allow_mixed_models=args.allow_mixed_models, errors=args.errors,
                on_error=args.on_error, redact=args.redact, on_progress=progress,
                languages=args.languages)
            progress(summary)  # the end, also when the last transcripts were not scored
    except (KeyboardInterrupt, RejectedRowError) as exc:
        where = f"{args.output} ends with complete rows" if args.output else "stopped"
        resume = "; run again with --resume to finish" if args.output and fmt == "jsonl" else ""
        stop = "interrupted" if isinstance(exc, KeyboardInterrupt) else redact_text(str(exc))
        print(f"qualaudit: {stop}; {written[0]} rows written this run, {where}{resume}",
              file=sys.stderr)
        return EXIT_FAILED
    _print_summary(summary, auditor, args)
    return exit_code(summary)


def _show_progress(bar: Any, summary: Any) -> None:
    """The bar in bytes of the input file read against its size (a count of transcripts for
    a source that is not a file), with transcripts scored, tokens/s and rejected after it."""
    if summary.total_bytes is not None:
        bar.total, bar.unit, bar.unit_scale = summary.total_bytes, "B", True
        bar.update(summary.bytes_read - bar.n)
    else:
        bar.unit, bar.unit_scale = " transcripts", False
        bar.update(summary.scored - bar.n)
    rate = summary.tokens / summary.seconds if summary.seconds else 0.0
    bar.set_postfix_str(f"{summary.scored} transcripts, {rate:,.0f} tokens/s, "
                        f"{summary.rejected} rejected")


def _print_summary(summary: Any, auditor: Any, args: argparse.Namespace) -> None:
    seconds = max(summary.seconds, 1e-9)
    untrained = "" if auditor.info.trained else " with an UNTRAINED model (scores are meaningless)"
    listed = f" (listed in {args.errors})" if args.errors and summary.rejected else ""
    truncated = (f"; {summary.truncated} truncated (see their `truncated`)"
                 if summary.truncated else "")
    print(f"qualaudit: scored {summary.scored} of {summary.inputs} transcripts "
          f"({summary.turns} turns, {summary.tokens} tokens) in {summary.seconds:.1f}s "
          f"({summary.scored / seconds:.1f} transcripts/s, {summary.tokens / seconds:,.0f} "
          f"tokens/s){untrained}; rejected {summary.rejected}{listed}{truncated}"
          + (f"; wrote {args.output}" if args.output else ""), file=sys.stderr)
    print(f"qualaudit: accounts: {summary.read} read = {summary.scored} scored + "
          f"{summary.resumed} already in the output + {summary.rejected} rejected",
          file=sys.stderr)


def _init(args: argparse.Namespace) -> int:
    import torch

    from .model import QualityModel

    torch.manual_seed(args.seed)
    model = QualityModel.from_encoder(args.encoder)
    path = model.save_pretrained(args.directory)
    print(f"qualaudit: wrote an UNTRAINED model to {path} (for pipeline tests only)", file=sys.stderr)
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from .model import DEFAULT_ENCODER, default_model_path
    from .training.recipe import build
    from .training.train import TrainingArgs

    source = ({"data_dir": args.data_dir, "sources": args.sources} if args.data_dir
              else {"examples": _labelled(args), "name": Path(args.output).name})
    init = args.init or (DEFAULT_ENCODER if args.data_dir else str(default_model_path() or ""))
    if not init:
        raise UsageError("no bundled model to fine-tune from; pass --init")
    options = {k: v for k, v in (("max_train_tokens", args.max_train_tokens),
                                 ("max_epochs", args.max_epochs),
                                 ("context_layers", args.context_layers),
                                 ("last_turns", args.last_turns),
                                 ("echo", args.echo),
                                 ("reading", args.reading)) if v is not None}
    try:
        training = TrainingArgs(output_dir=args.output, init=init, **source,
                                heads=args.heads, freeze_encoder=args.freeze_encoder,
                                reads_only=args.reads_only,
                                refit_heads=args.refit_heads,
                                seed=args.seed, device=args.device, progress=not args.quiet,
                                **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    summary = build(training, method=args.calibration, command="qualaudit " + " ".join(sys.argv[1:]))
    r = summary.training
    print(f"qualaudit: trained {r.steps} steps on {r.train_tokens:,} tokens in "
          f"{summary.seconds / 60:.1f} min (best dev loss at step {r.best_step}); "
          f"calibrated {len(summary.calibration)} heads; wrote {summary.directory}", file=sys.stderr)
    return EXIT_OK


def _calibrate(args: argparse.Namespace) -> int:
    import shutil

    from .model import QualityModel
    from .training.calibration_job import fit_calibration
    from .training.datasets import by_split
    from .training.recipe import calibration_table

    examples = _labelled(args)
    if args.data_dir:
        examples = by_split(examples, "dev:calibrate")
    model = QualityModel.from_pretrained(args.model)
    try:
        report = fit_calibration(model, examples, method=args.method, heads=args.heads)
    except ValueError as exc:  # a target the model lacks
        raise UsageError(f"--heads: {exc}") from None
    except QualauditError as exc:  # a named target with too few labels: nothing written
        raise QualauditError(f"--heads: {exc}") from None
    if not report:
        raise QualauditError("no head had 20 or more labelled items; nothing was calibrated")
    out = Path(args.output)
    if out.resolve() != Path(args.model).resolve():
        shutil.copytree(args.model, out, dirs_exist_ok=True)
    model.calibration.save(out / "calibration.json")
    card = out / "README.md"
    note = (f"\n## Recalibrated\n`qualaudit {' '.join(sys.argv[1:])}` refitted the calibration "
            f"of these heads (ECE on the fitting items, in-sample):\n\n{calibration_table(report)}\n")
    with card.open("a", encoding="utf-8") as handle:
        handle.write(note)
    print(calibration_table(report))
    print(f"qualaudit: recalibrated {len(report)} heads; wrote {out}", file=sys.stderr)
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from .io import read_labels, read_scores
    from .report.agreement import agreement, to_markdown

    labels = read_labels(args.labels)
    try:
        rows = read_scores(args.scores)
    except InputError:  # not a score file (a ConvoKit folder, an unknown extension)
        rows = []
    if not rows or any("resolution" not in r for r in rows):  # raw transcripts: score them
        from .scorer import Auditor

        rows = Auditor.from_pretrained(args.model).score(args.scores)
    report = agreement(rows, labels, threshold=args.threshold)
    print(to_markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return EXIT_OK


def _score_on_ray(args: argparse.Namespace) -> int:
    from .integrations.ray import require_ray, score_files

    if not args.output:
        error("--engine ray writes a folder of part files: give it with -o OUT (OUT.parquet "
              "for Parquet parts)")
        return EXIT_USAGE
    if args.on_error == "fail":
        error("--on-error fail stops at the first rejected transcript, which a Ray job has no "
              "order for; use --errors ERR.jsonl and check the exit code (3)")
        return EXIT_USAGE
    problem = _paths_problem(args, folder_output=True)
    if problem:
        error(problem)
        return EXIT_USAGE
    context = require_ray().data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = not args.quiet
    if args.quiet:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    options = {k: v for k, v in (("device", None if args.device == "auto" else args.device),
                                 ("max_batch_tokens", args.max_batch_tokens),
                                 ("quantize", args.quantize)) if v is not None}
    try:
        summary = score_files(
            args.input, args.output, args.model, resume=args.resume,
            allow_mixed_models=args.allow_mixed_models, errors=args.errors,
            per_turn=args.per_turn, actors=args.actors, gpus_per_actor=args.gpus_per_actor,
            address=args.ray_address, format=args.format, columns=_columns(args),
            role_map=args.role_map, redact=args.redact, languages=args.languages,
            precision=args.precision,
            top_evidence=args.top_evidence, chunk_turns=args.chunk_turns,
            max_turns=args.max_turns or None, **options)
    except KeyboardInterrupt:
        print(f"qualaudit: interrupted; {args.output} keeps its complete part files; run again "
              "with --resume to finish", file=sys.stderr)
        return EXIT_FAILED
    listed = f" (listed in {args.errors})" if args.errors and summary.rejected else ""
    print(f"qualaudit: scored {summary.scored} transcripts on Ray in {summary.seconds:.1f}s "
          f"(of which {summary.startup_seconds:.1f}s connecting to Ray); rejected "
          f"{summary.rejected}{listed}; wrote {len(summary.files)} part files to {args.output}",
          file=sys.stderr)
    print(f"qualaudit: accounts: {summary.read} read = {summary.scored} scored + "
          f"{summary.resumed} already in the output + {summary.rejected} rejected",
          file=sys.stderr)
    return exit_code(summary)


def _assignments(text: str) -> list[tuple[str, float]]:
    """`name=number[,name=number...]` as (name, number) pairs."""
    pairs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, value = part.partition("=")
        try:
            pairs.append((name.strip(), float(value)))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected NAME=NUMBER (e.g. escalation=0.7), found {part!r}") from None
    return pairs


def _report(args: argparse.Namespace) -> int:
    import json
    import time

    from .report.build import ReportOptions, build_report
    from .report.markdown import to_markdown

    if not args.scores and not args.compare:
        raise UsageError("give score files to report on, or --compare A B")
    for path in (*args.scores, *(args.compare or ()), args.transcripts, args.labels):
        if path and not Path(path).is_file():
            raise UsageError(f"input {path!r} does not exist (or is not a file)")
    options = ReportOptions(
        by=tuple(args.by), strata=args.strata, transcripts=args.transcripts, over=args.over,
        tz=args.tz, thresholds=dict(args.threshold), labels=args.labels,
        redact=not args.no_redact, seed=args.seed, n_boot=args.n_boot, n_clusters=args.clusters,
        reference_mix=dict(args.reference_mix) if args.reference_mix else None,
        queue_size=args.queue_size, title=args.title)
    started = time.perf_counter()

    def progress(rows: int, source: str) -> None:
        if not args.quiet:
            print(f"qualaudit: read {rows:,} rows ({source}), "
                  f"{time.perf_counter() - started:.0f}s", file=sys.stderr)

    report = build_report(args.scores, options,
                          compare=tuple(args.compare) if args.compare else None,
                          on_progress=progress)
    markdown = to_markdown(report)
    written = []
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, allow_nan=False) + "\n",
                                   encoding="utf-8")
        written.append(args.json)
    if args.markdown:
        Path(args.markdown).write_text(markdown, encoding="utf-8")
        written.append(args.markdown)
    if args.html:
        from .report.html import to_html

        Path(args.html).write_text(to_html(report), encoding="utf-8")
        written.append(args.html)
    if args.csv:
        from .report.csv_tables import write_csv_tables

        written += [str(p) for p in write_csv_tables(report, args.csv)]
    if not written:
        print(markdown)
    for note in report.get("notes", []):
        print(f"qualaudit: note: {note}", file=sys.stderr)
    for entry in report.get("exclusions", []):
        print(f"qualaudit: excluded {entry['count']} row(s) from {entry['section']}: "
              f"{entry['reason']}", file=sys.stderr)
    seconds = report["provenance"]["seconds"]["total"]
    print(f"qualaudit: report on {report.get('n_conversations', 0):,} conversations in "
          f"{seconds:.1f}s" + (f"; wrote {', '.join(written)}" if written else ""),
          file=sys.stderr)
    # rows left out of the whole report are rejected rows (3), as in `score`; a row left out
    # of one section only (say a time that does not parse) is counted, not rejected
    rejected = any(e["section"] in ("all", "transcripts") for e in report.get("exclusions", []))
    return EXIT_REJECTED if rejected else EXIT_OK
