"""Entry point for `python3 -m bench` (and `make bench`)."""

from bench.bench import main

if __name__ == "__main__":  # spawned load processes import this module too; they must not run it
    raise SystemExit(main())
