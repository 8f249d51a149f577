"""``python -m esg_leads ...`` is the ``esg-leads`` command."""

from esg_leads.cli.main import main

raise SystemExit(main())
