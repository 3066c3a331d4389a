"""Shim so that `python cli.py ...` from a checkout behaves exactly like `neat ...`."""

from neat.cli import main

if __name__ == "__main__":
    main()
