"""``python -m converge`` runs the CLI."""

from converge.cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    raise SystemExit(main())
