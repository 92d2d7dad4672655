"""`qualaudit` command line: thin subcommands over library functions; only this module prints
and exits. Exit codes: 0 every input scored, 1 the run failed, 2 usage error, 3 finished with
rejected rows."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from . import __version__
from .errors import InputError, QualauditError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qualaudit", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"qualaudit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    score = sub.add_parser("score", help="score transcripts, one output row per transcript")
    score.add_argument("input", help="JSONL, CSV, Parquet, or a ConvoKit corpus directory")
    score.add_argument("-o", "--output", help="output .jsonl/.csv/.parquet (default: JSONL on stdout)")
    score.add_argument("--model", help="model directory or hub id (default: the bundled model)")
    score.add_argument("--device", default="auto", type=_device, help="auto (CUDA when present), cpu, cuda, cuda:1")
    score.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    score.add_argument("--max-batch-tokens", type=_count(1), default=8192, metavar="N",
                       help="padded tokens per encoder batch (default 8192)")
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
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(func=_score)

    init = sub.add_parser("init", help="build an UNTRAINED model on an encoder (pipeline tests)")
    init.add_argument("directory")
    init.add_argument("--encoder", default="minilm",
                      help="HF encoder path or hub id; 'minilm' = the packaged MiniLM-L6")
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(func=_init)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors, --help, --version: report the code, not raise
        return int(exc.code or 0)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our own bar is the one that matters
    handler = logging.StreamHandler(sys.stderr)  # stderr as it is now (tests swap it)
    handler.setFormatter(logging.Formatter("qualaudit: %(levelname)s: %(message)s"))
    logger = logging.getLogger("qualaudit")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():  # warnings as one log line each, not Python's two
            warnings.showwarning = lambda message, *_args, **_kw: logger.warning("%s", message)
            return args.func(args)
    except InputError as exc:
        print(f"qualaudit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except QualauditError as exc:
        print(f"qualaudit: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, not with a trace
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("qualaudit: output closed early (broken pipe); stopped", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"qualaudit: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("qualaudit: interrupted", file=sys.stderr)
        return EXIT_FAILED
    finally:
        logger.removeHandler(handler)


def _score(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .io import ColumnMap
    from .pipeline import score_to_file
    from .scorer import Auditor
    from .writers import output_format

    try:
        output_format(args.output)
    except ValueError as exc:
        print(f"qualaudit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not Path(args.input).exists():
        print(f"qualaudit: error: input {args.input!r} does not exist", file=sys.stderr)
        return EXIT_USAGE
    if args.output:
        output, source = Path(args.output).resolve(), Path(args.input).resolve()
        overwrites_input = (output == source or (source.is_dir() and output.is_relative_to(source))
                            or (output.exists() and os.path.samefile(output, source)))
        problem = ("is (or is inside) the input: scoring would overwrite it" if overwrites_input
                   else "is a directory" if output.is_dir()
                   else "is in a folder that does not exist" if not output.parent.is_dir()
                   else None)
        if problem:
            print(f"qualaudit: error: output {args.output!r} {problem}", file=sys.stderr)
            return EXIT_USAGE
    device = None if args.device == "auto" else args.device
    auditor = Auditor.from_pretrained(args.model, device=device, precision=args.precision,
                                      max_batch_tokens=args.max_batch_tokens,
                                      top_evidence=args.top_evidence)
    columns = ColumnMap(id=args.id_column, role=args.role_column, text=args.text_column,
                        order=args.order_column, agent_type=args.agent_type_column)
    bar = tqdm(unit=" transcripts", file=sys.stderr, disable=args.quiet, dynamic_ncols=True)

    def progress(summary) -> None:
        bar.update(summary.scored - bar.n)
        rate = summary.tokens / summary.seconds if summary.seconds else 0.0
        bar.set_postfix_str(f"{rate:,.0f} tokens/s, {summary.rejected} rejected")

    with bar:
        summary = score_to_file(args.input, args.output, auditor, format=args.format,
                                columns=columns, role_map=args.role_map,
                                per_turn=args.per_turn, on_progress=progress)
    seconds = max(summary.seconds, 1e-9)
    untrained = "" if auditor.info.trained else " with an UNTRAINED model (scores are meaningless)"
    print(f"qualaudit: scored {summary.scored} of {summary.inputs} transcripts "
          f"({summary.turns} turns, {summary.tokens} tokens) in {summary.seconds:.1f}s "
          f"({summary.scored / seconds:.1f} transcripts/s, {summary.tokens / seconds:,.0f} "
          f"tokens/s){untrained}; rejected {summary.rejected}"
          + (f"; wrote {args.output}" if args.output else ""), file=sys.stderr)
    return EXIT_REJECTED if summary.rejected else EXIT_OK


def _init(args: argparse.Namespace) -> int:
    import torch

    from .model import QualityModel

    torch.manual_seed(args.seed)
    model = QualityModel.from_encoder(args.encoder)
    path = model.save_pretrained(args.directory)
    print(f"qualaudit: wrote an UNTRAINED model to {path} (for pipeline tests only)", file=sys.stderr)
    return EXIT_OK
