"""``python -m idp``: the same as the ``idp`` command."""

from idp.cli import main

main()
