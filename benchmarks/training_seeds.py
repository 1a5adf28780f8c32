"""The `training` reference over 20 seeds: does overfitting one batch clear the tests' floor with margin?

Runs the reference's `overfit_one_batch` on the public and hidden tests' settings (model, batch shape,
AdamW lr 1e-2, CPU budget) with 20 model seeds and 20 batch seeds, and prints the final loss's min and
max next to the floor (0.5). `python benchmarks/training_seeds.py` (about 1 minute on 2 CPU cores)."""
import os
import pathlib
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "reference" / "training"))

import torch  # noqa: E402

import training  # noqa: E402

FLOOR = 0.5
SETTINGS = {  # name: (config, batch shape, padding per row, steps on the CPU)
    "public": ({"vocab_size": 11, "hidden_size": 16, "num_heads": 2, "dropout": 0.0, "seq_len": 6, "num_layers": 2},
               (4, 6), [0, 1, 3, 2], 60),
    "hidden": ({"vocab_size": 13, "hidden_size": 16, "num_heads": 2, "dropout": 0.0, "seq_len": 8, "num_layers": 2},
               (4, 8), [0, 2, 4, 1], 60),
}


def final_loss(config, shape, pads, steps, seed: int) -> float:
    model = training.build_model(config, seed=seed)
    batch = torch.randint(1, config["vocab_size"], shape, generator=torch.Generator().manual_seed(1000 + seed))
    for row, n in enumerate(pads):
        if n:
            batch[row, shape[1] - n:] = 0
    training.overfit_one_batch(model, batch, training.plain_adamw(model, lr=1e-2), pad_token_id=0, steps=steps)
    with torch.no_grad():
        return training.lm_loss(model.eval()(batch), batch, 0).item()


def main() -> None:
    for name, (config, shape, pads, steps) in SETTINGS.items():
        losses = [final_loss(config, shape, pads, steps, seed) for seed in range(20)]
        print(f"{name}: loss after {steps} steps over 20 seeds: min {min(losses):.3f}, max {max(losses):.3f} "
              f"(floor {FLOOR}; margin {FLOOR - max(losses):.3f})")


if __name__ == "__main__":
    main()
