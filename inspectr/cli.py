"""Provides the command line: ``inspectr SPEC [options]`` and ``main(argv) -> exit code``."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Any

from inspectr.core.optim import DEFAULT_LR, DEFAULT_STEPS, DTYPE_CHOICES, OPTIMIZERS
from inspectr.errors import (
    EXIT_BAD_REQUEST,
    EXIT_MODEL_PROBLEM,
    EXIT_OK,
    InspectrError,
    print_error,
)

FORMATS = ("text", "markdown", "json", "html", "svg")

EPILOG = """\
model specs:
  resnet18                     a registered model (torchvision, weights=None, or the sample gallery)
  sample:lenet                 prefixes torchvision: / sample: pick the source
  path/to/model.py:MyNet       an nn.Module subclass, a factory function or a module-level instance;
                               a file inside a package (its folder has __init__.py) is imported as
                               part of it, so relative imports work; run from the repository root
                               and repo-root imports (from utils import ...) work too
  package.module:make_model    the same, from an installed module or a package in the current folder
  path/to/hf-folder            a Hugging Face folder (config.json, weights) also as hf:FOLDER; needs inspectr[hf]
  timm:vit_small_patch16_224   a timm model (pretrained=False); needs inspectr[timm]

weights:
  --weights FILE               a torch file (weights_only), model.safetensors, a sharded
                               model.safetensors.index.json, or a folder holding one
  --pretrained                 a torchvision model's DEFAULT weights from the local torch hub
                               cache ($TORCH_HOME/hub/checkpoints); never downloads

inputs (--input, repeat for several positional inputs):
  [NAME=][DTYPE:]D1,D2,...[:LOW..HIGH]
  --input 2,3,224,224                      float32 noise
  --input int64:2,16:0..1000               integer ids in [0, 1000)
  --input 2,10,64 --input tgt=2,9,64       a positional and a keyword input
  Without --input: the model's example_input(), a module-level example_input() in its file,
  the known input of a registered model, or a guess from the first layer.

exit codes: 0 fine · 1 the model has problems (probe failed, error findings) · 2 bad request

examples:
  inspectr                                 the gallery of sample models (in a terminal)
  inspectr resnet18                        open the inspector app
  inspectr resnet18 --report --depth 2     print a summary report
  inspectr model.py:Net --format json -o report.json
  inspectr sick_dead_relu --check          CI: exit 1 when an error finding is present
  inspectr lenet --report --steps 20       train 20 steps on one batch: does it learn, layer by layer
  inspectr runs/exp1 --report              a run recorded by inspectr.watch (--format json, --check)
  inspectr runs/exp1                       the run in the app, live while it is written
  inspectr runs/                           the runs in a folder: a picker (a table with --report)
  inspectr watch -- python train.py        watch a training script unchanged (inspectr watch --help)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="inspectr",
        description="Inspect and debug a PyTorch model: module tree, parameter counts, a probe "
        "forward/backward pass with shapes, gradient norms and dead units, and findings that name the layer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", nargs="?", help="the model (a registered name or path/to/model.py:Name), "
                   "or a run folder written by inspectr.watch")
    p.add_argument("--list", action="store_true", help="list registered models, grouped by source")
    out = p.add_argument_group("output")
    out.add_argument("--report", action="store_true", help="print a report instead of opening the app")
    out.add_argument("--check", action="store_true", help="compact summary; exit 1 on any error finding (for CI)")
    out.add_argument("--format", choices=FORMATS, default=None, help="report format (default text)")
    out.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    out.add_argument("--depth", type=int, default=None, metavar="N", help="fold modules deeper than N")
    out.add_argument("--width", type=int, default=None, help="text width when not on a terminal (default 120)")
    model = p.add_argument_group("model")
    model.add_argument("--kwargs", metavar="JSON", help='constructor arguments as JSON, e.g. \'{"num_classes": 10}\'')
    model.add_argument("--weights", metavar="FILE",
                       help="checkpoint to load: torch file (weights_only=True), .safetensors, a sharded .index.json, or a folder")
    model.add_argument("--pretrained", action="store_true",
                       help="load a torchvision model's DEFAULT weights from the local torch hub cache (never downloads)")
    model.add_argument("--trust-pickle", action="store_true",
                       help="allow loading a whole pickled model file: this RUNS CODE from the file")
    model.add_argument("--freeze", action="append", default=[], metavar="GLOB", help="freeze modules whose path matches (repeatable)")
    model.add_argument("--unfreeze", action="append", default=[], metavar="GLOB", help="unfreeze modules whose path matches (repeatable)")
    model.add_argument("--freeze-plan", metavar="FILE", help="apply a freeze plan saved from the app")
    probe = p.add_argument_group("probe")
    probe.add_argument("--input", action="append", dest="inputs", metavar="SPEC", help="an input shape/dtype (see below)")
    probe.add_argument("--batch-size", type=int, default=None, help="batch size for synthesized inputs (default 4; 2 for images)")
    probe.add_argument("--seed", type=int, default=0, help="random seed for inputs and the probe (default 0)")
    probe.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps, meta or auto (default cpu)")
    mode = probe.add_mutually_exclusive_group()
    mode.add_argument("--train", dest="mode", action="store_const", const="train", help="probe in train mode")
    mode.add_argument("--eval", dest="mode", action="store_const", const="eval", help="probe in eval mode")
    probe.add_argument("--no-backward", action="store_true", help="forward pass only")
    probe.add_argument("--no-probe", action="store_true", help="structure and parameter counts only")
    probe.add_argument("--timing", action="store_true", help="time every module (inclusive wall time)")
    train = p.add_argument_group("training and memory")
    train.add_argument("--steps", type=int, nargs="?", const=True, default=None, metavar="N",
                       help="after the probe, train N steps on the probe batch and watch every layer "
                            f"(alone: the model's example_training steps, else {DEFAULT_STEPS})")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                       help="optimizer to train with and to count state for (default adamw)")
    train.add_argument("--lr", type=float, default=None, help=f"learning rate (default {DEFAULT_LR:g})")
    train.add_argument("--momentum", type=float, default=None, help="momentum for --optimizer sgd (default 0)")
    train.add_argument("--dtype", choices=DTYPE_CHOICES, default=None,
                       help="estimate memory for autocast mixed precision (bf16, fp16) or fp32")
    train.add_argument("--fit", metavar="SIZE", default=None,
                       help="the largest batch whose training peak fits SIZE (24GiB, 80GB, ...)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(mode="own")
    return p


def inspect_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        input_specs=args.inputs,
        kwargs=args.kwargs,
        weights=args.weights,
        pretrained=args.pretrained,
        trust_pickle=args.trust_pickle,
        device=args.device,
        batch_size=args.batch_size,
        mode=args.mode,
        seed=args.seed,
        backward=not args.no_backward,
        probe=not args.no_probe,
        timing=args.timing,
        freeze=args.freeze,
        unfreeze=args.unfreeze,
        freeze_plan=args.freeze_plan,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        dtype=args.dtype,
        fit=args.fit,
        steps=args.steps,
    )


class ProgressLine:
    """One line on a terminal's stderr while a report is made: phase, module k of N, elapsed.

    Rewritten in place at most ten times a second and wiped before the report prints; never
    used when stderr is not a terminal (CI logs and pipes get nothing).
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.start = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done and now - self.last < 0.1:
            return
        self.last = now
        where = f" · module {done:,} of {total:,}" if total else ""
        self.stream.write(f"\r\x1b[2Kinspectr: {phase}{where} · {now - self.start:.1f} s")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.shown = False


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 fine, 1 model problems, 2 bad request)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["watch"]:
        return _watch_command(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: hub loading is local-only anyway
    try:
        return _run(args, parser)
    except InspectrError as err:
        if args.debug:
            traceback.print_exc()
        print_error(err)
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; the model was left as it was\n")
        return 130


def _watch_command(argv: list[str]) -> int:
    """``inspectr watch ... -- COMMAND``: the command's exit code, or 2 for a bad request of ours."""
    from inspectr.launch import watch_main

    try:
        return watch_main(argv)
    except InspectrError as err:
        print_error(err)
        return err.exit_code


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.list:
        from inspectr.report.gallery import print_list

        print_list()
        return EXIT_OK
    if args.depth is not None and args.depth < 0:
        raise InspectrError(f"--depth {args.depth} must be 0 or more.", "E.g. --depth 2.")
    interactive = sys.stdout.isatty() and sys.stdin.isatty()
    wants_report = args.report or args.check or args.format is not None or args.output is not None
    if args.spec is None:
        if interactive and not wants_report:
            from inspectr.tui.app import run_app

            return run_app(None, inspect_options(args))
        from inspectr.report.gallery import print_list

        print_list()
        sys.stdout.write("\nRun `inspectr NAME` to open one, or `inspectr NAME --report` to print its report.\n")
        return EXIT_OK
    if _is_run_folder(args.spec):
        if interactive and not wants_report:
            from inspectr.tui.run_app import run_runs_app

            return run_runs_app(args.spec)
        return _run_folder_report(args)
    if _holds_runs(args.spec):
        return _runs_listing(args, interactive and not wants_report)
    if interactive and not wants_report:
        from inspectr.tui.app import run_app

        return run_app(args.spec, inspect_options(args))
    return _report(args)


def _is_run_folder(spec: str) -> bool:
    """A folder written by ``inspectr.watch`` (it holds run.sqlite); checked without importing torch."""
    from pathlib import Path

    return (Path(spec) / "run.sqlite").is_file()


def _holds_runs(spec: str) -> bool:
    """A folder that is no model itself (no config.json) with run folders 1-2 levels below it; a
    folder holding neither gets an error here, not a confusing model-loading one."""
    from pathlib import Path

    folder = Path(spec)
    if not folder.is_dir() or (folder / "config.json").is_file():
        return False
    from inspectr.core.runs.listing import find_runs

    if find_runs(folder):
        return True
    model_files = {".json", ".safetensors", ".bin", ".pt", ".pth", ".ckpt"}
    if any(p.suffix in model_files for p in folder.iterdir()):
        return False  # an adapter, weights without config.json...: the model loader says what is missing
    raise InspectrError(f"{spec} is a folder that holds no inspectr run (no run.sqlite in it or one or two "
                        "levels below) and no model (no config.json).",
                        "Give a run folder written by inspectr.watch(run=...), a folder of such runs "
                        "(e.g. inspectr runs/), or a model spec (inspectr --list shows the registered ones).")


def _runs_listing(args: argparse.Namespace, interactive: bool) -> int:
    """``inspectr runs/``: a picker in the app on a terminal, else a table of the runs on stdout."""
    if interactive:
        from inspectr.tui.run_app import run_runs_app

        return run_runs_app(folder=args.spec)
    if args.format not in (None, "text"):
        raise InspectrError(f"--format {args.format} is not available for a folder of runs ({args.spec}).",
                            "Use --report for the table, or give one run folder for --format json.")
    from inspectr.core.runs.listing import list_runs
    from inspectr.report.render import make_console
    from inspectr.report.run_views import runs_table

    tty = sys.stdout.isatty()
    console = make_console(width=None if tty else (args.width or int(os.environ.get("COLUMNS", 0)) or 120),
                           color=None if tty else False)
    console.print(runs_table(list_runs(args.spec), args.spec))
    return EXIT_OK


def _run_folder_report(args: argparse.Namespace) -> int:
    """``inspectr RUN``: the report of a watched run (text, or JSON with --format json); --check
    prints one line per finding. Exit 1 when an error finding is present."""
    from inspectr.core.runs.report import load_run

    fmt = args.format or "text"
    if fmt not in ("text", "json"):
        raise InspectrError(f"--format {fmt} is not available for a run folder ({args.spec}).",
                            "Use --format text (the default) or --format json.")
    report = load_run(args.spec)
    nested_errors = False
    if fmt == "json":
        text = report.to_json()
    else:
        from inspectr.report.run import render_run_text

        tty = sys.stdout.isatty() and not args.output
        width = args.width or (None if tty else int(os.environ.get("COLUMNS", 0)) or 120) or 120
        text = render_run_text(report, width)
        for sub in _nested_runs(args.spec):  # `inspectr watch`: a second optimizer's run (RUN/optN)
            sub_report = load_run(sub)
            text += f"\n── {sub} ──\n" + render_run_text(sub_report, width)
            nested_errors = nested_errors or sub_report.has_errors
    if args.check and args.format is None and not args.output:
        from inspectr.report.run import print_run_check

        print_run_check(report)
    elif args.output:
        from pathlib import Path

        try:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InspectrError(f"-o {args.output}: the report could not be written ({exc.strerror or exc}).",
                                "Give a file path in a folder you can write to, e.g. -o run.json.") from None
        sys.stderr.write(f"wrote {fmt} report of the run to {args.output}\n")
    else:
        sys.stdout.write(text)
    return EXIT_MODEL_PROBLEM if report.has_errors or nested_errors else EXIT_OK


def _nested_runs(spec: str) -> list[Any]:
    """The runs `inspectr watch` records beside RUN's own: RUN/optN, one per further optimizer."""
    from pathlib import Path

    from inspectr.launch import recorded_runs

    return recorded_runs(Path(spec))[1:]


def _report(args: argparse.Namespace) -> int:
    from inspectr.core.inspect import inspect

    line = ProgressLine(sys.stderr) if sys.stderr.isatty() else None
    try:
        report = inspect(args.spec, **inspect_options(args), progress=line)
    finally:
        if line is not None:
            line.clear()
    from inspectr.report.render import export, make_console, report_renderables

    fmt = args.format or "text"
    if args.check and args.format is None and not args.output:
        from inspectr.report.gallery import print_check

        print_check(report)
    elif args.output:
        from pathlib import Path

        out = Path(args.output)
        text = export(report, fmt, args.depth, args.width or 120)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InspectrError(
                f"-o {args.output}: the report could not be written ({exc.strerror or exc}).",
                "Give a file path in a folder you can write to, e.g. -o report.txt.",
            ) from None
        sys.stderr.write(f"wrote {fmt} report to {args.output}\n")
    elif fmt == "text":
        tty = sys.stdout.isatty()
        width = None if tty else (args.width or int(os.environ.get("COLUMNS", 0)) or 120)
        console = make_console(width=width, color=None if tty else False)
        for part in report_renderables(report, args.depth, console.width):
            console.print(part)
    else:
        sys.stdout.write(export(report, fmt, args.depth, args.width or 120))
    return EXIT_MODEL_PROBLEM if report.has_errors else EXIT_OK


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


__all__ = ["EXIT_BAD_REQUEST", "main", "main_entry"]
