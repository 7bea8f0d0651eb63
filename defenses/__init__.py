"""Defenses: train robust classifiers, evaluate them white-box, export them to the arena's ONNX.

    from defenses.presets import DEMO                    # named, measured configurations
    from defenses.config import TrainConfig              # every hyper-parameter of a run
    from defenses.train import train                     # config + folder -> checkpoint.pt
    from defenses.checkpoint import load_checkpoint      # -> (model in eval mode, meta)
    from defenses.whitebox import evaluate, minimal_l2, pgd
    from defenses.export import export_checkpoint, export_onnx

Modules: models/ (architectures), methods/ (natural, PGD-AT, TRADES, MART objectives),
threat.py (perturbation sets and the projected-gradient loop), modes.py (frozen parameters,
BatchNorm mode), augment.py, schedule.py, device.py, distributed.py (torchrun/DDP), rng.py,
tensors.py; data/ (numpy-only datasets) is imported by the server.
`arena bench train` lives on the top floor (arena/top/bench/train.py).
"""
