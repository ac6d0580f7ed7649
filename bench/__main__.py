"""``python -m msgbench``: the same as the ``msgbench`` console script."""

from msgbench.cli import main

if __name__ == "__main__":
    main()
