"""Create the benchmark database: ``python -m benchmarks.seed PATH [--products N]``."""

from __future__ import annotations

import argparse

from benchmarks.catalog import PRODUCTS, seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", help="the SQLite file to create (replaced if it exists)")
    parser.add_argument("--products", type=int, default=PRODUCTS)
    args = parser.parse_args()
    print(seed(args.path, args.products))


if __name__ == "__main__":
    main()
