"""Layer Card coupling in fp32 and in bf16 on the same model: the two coupling matrices side by side.

    python bench/coupling_dtype.py [--model tiny] [--layers 8]

Builds the same card (shipped corpus, seed 171, 2 probe batches of 4) with ``--dtype float32`` and
``--dtype bfloat16`` and prints each matrix's off-diagonal range and rho, and the largest entry-wise
difference. The coupling's finite differences are taken in fp32 whatever the dtype (LAYERCARD.md).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from revtune.config import RunConfig
from revtune.layercard.build import build_card
from revtune.layercard.options import CardOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--layers", type=int, default=8, help="layers of the tiny model")
    args = parser.parse_args()
    matrices = {}
    with tempfile.TemporaryDirectory() as folder:
        for dtype in ("float32", "bfloat16"):
            config = RunConfig.from_values(dict(model=args.model, tiny_layers=args.layers, dtype=dtype, batch_size=4,
                                                max_length=64, max_steps=20, seed=171))
            card = build_card(config, CardOptions(probe_batches=2), Path(folder) / dtype, quiet=True)
            r = matrices[dtype] = card.coupling
            off = r[~np.eye(len(r), dtype=bool)]
            print(f"{dtype}: off-diagonal {off.min():+.3f} .. {off.max():+.3f}, rho {card.data['coupling']['rho']:.3f}")
    print(f"largest |R_float32 - R_bfloat16|: {np.abs(matrices['float32'] - matrices['bfloat16']).max():.4f}")


if __name__ == "__main__":
    main()
