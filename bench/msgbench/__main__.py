"""``python -m msgbench``: the same as the ``msgbench`` console script."""

from msgbench.cli.main import main

if __name__ == "__main__":
    main()
