"""`arena export CKPT --out model.onnx`: the arena's ONNX defense file, checked against torch."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("export", help="export a checkpoint to the arena's ONNX contract, with a parity check")
    parser.add_argument("checkpoint", type=Path, help="a checkpoint.pt or its run folder")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    parser.add_argument("--data", default=None, help="data source of the parity check [the checkpoint's dataset]")
    parser.add_argument("--samples", type=int, default=None, help="parity on the first N validation images [all]")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from arena.top.cli import CommandError
    from defenses.export import TOLERANCE, ExportError, export_checkpoint

    try:
        parity = export_checkpoint(args.checkpoint, args.out, force=args.force, data=args.data, samples=args.samples)
    except ExportError as error:
        raise CommandError(str(error)) from None
    print(
        f"parity on {parity.samples} validation images: max |logit diff| {parity.max_abs_diff:.3g} "
        f"(<= {TOLERANCE:g}), labels identical, ONNX accuracy {parity.onnx_accuracy:.4f}"
    )
    print(f"wrote {args.out}")
    return 0
