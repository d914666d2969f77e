"""``python -m edgefusion.task check FILE... | show NAME``: see :mod:`edgefusion.task.tool`."""

from edgefusion.task.tool import main

raise SystemExit(main())
