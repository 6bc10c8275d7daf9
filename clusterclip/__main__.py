"""``python -m clusterclip``: the same as the ``clusterclip`` command."""

from .cli import main

if __name__ == "__main__":
    main()
