"""`arena data`: look at a dataset, or write evaluation samples to an .npz for `arena attack --local`."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("data", help="inspect a dataset or export evaluation samples")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    info = actions.add_parser("info", help="classes and split sizes of a dataset (builds its cache)")
    _source_arguments(info)
    info.set_defaults(func=_info)

    samples = actions.add_parser("samples", help="write the first N evaluation samples to an .npz (x, y, class_names)")
    _source_arguments(samples)
    samples.add_argument("--samples", type=int, default=100, help="how many (default 100)")
    samples.add_argument("--out", type=Path, required=True, help="the .npz to write (must not exist)")
    samples.set_defaults(func=_samples)


def _source_arguments(parser) -> None:
    parser.add_argument("--data", default="demo", help="'demo' (the embedded dataset) or a tiny-imagenet-200 folder")
    parser.add_argument("--classes", type=int, default=None, help="number of classes (default: 10 for demo, all otherwise)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the embedded dataset (default 0)")


def _info(args) -> int:
    from defenses.data import load_split

    for split in ("train", "val"):
        data = load_split(args.data, split, num_classes=args.classes, seed=args.seed)
        counts = ",".join(str(c) for c in data.images.shape)
        print(f"{split}: {len(data)} images [{counts}] uint8, {data.num_classes} classes")
    print("classes: " + ", ".join(data.class_names))
    return 0


def _samples(args) -> int:
    import os
    import tempfile

    import numpy as np

    from defenses.data import load_samples

    if args.out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {args.out}")
    if args.out.exists():
        raise FileExistsError(f"--out {args.out} exists; not overwriting it")
    x, y, names = load_samples(args.data, args.samples, num_classes=args.classes, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=args.out.parent, suffix=".tmp", delete=False) as handle:
        np.savez(handle, x=x, y=y, class_names=np.array(names))
    os.replace(handle.name, args.out)
    print(f"wrote {args.out}: x float32 {list(x.shape)}, y int64 [{y.shape[0]}], {len(names)} classes")
    return 0
