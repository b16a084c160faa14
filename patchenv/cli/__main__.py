"""``python -m patchenv.cli``: the ``patchenv`` command without its console script."""
from patchenv.cli.main import main

raise SystemExit(main())
