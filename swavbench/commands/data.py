"""`swavbench data synth`: write a synthetic ImageNet-layout dataset of JPEGs (see swavbench.train.synth)."""

from __future__ import annotations

import argparse

# = swavbench.train.synth.MAX_CLASSES; not imported here, since swavbench.train imports paddle and
# every command builds this parser.
MAX_CLASSES = 10_000


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _class_count(text: str) -> int:
    value = _positive(text)
    if value > MAX_CLASSES:
        raise argparse.ArgumentTypeError(f"at most {MAX_CLASSES}, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _image_size(text: str) -> int:
    value = int(text)
    if value < 8:
        raise argparse.ArgumentTypeError(f"must be >= 8 pixels, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `data` with its sub-command `synth`."""
    data = subparsers.add_parser("data", help="dataset tools (synthetic ImageNet-layout data)")
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=type(data))
    commands.required = True
    synth = commands.add_parser(
        "synth",
        help="write <out>/train|val/<class>/*.JPEG with visually distinct classes, plus "
        "1percent.txt/10percent.txt (SimCLR format)",
    )
    synth.add_argument("--out", required=True, help="output folder (created; a previous synth output is replaced)")
    synth.add_argument("--classes", type=_class_count, default=10, help="number of classes (default 10)")
    synth.add_argument("--train-per-class", type=_positive, default=100, help="train images per class (100)")
    synth.add_argument("--val-per-class", type=_non_negative, default=20, help="val images per class (20)")
    synth.add_argument("--size", type=_image_size, default=64, help="image side in pixels (64)")
    synth.add_argument("--seed", type=int, default=0, help="seed; same seed, same bytes (0)")
    synth.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the dataset and print a one-line summary."""
    from swavbench.train.synth import synthesize

    result = synthesize(
        args.out,
        classes=args.classes,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        size=args.size,
        seed=args.seed,
    )
    print(f"swavbench data synth: {result.summary()}")
    return 0
