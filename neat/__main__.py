"""`python -m neat ...` runs the CLI (the device machines run the project this way)."""

from neat.cli import main

if __name__ == "__main__":
    main()
