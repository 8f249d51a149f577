"""``python -m esg_leads ...`` is the ``esg-leads`` command."""

from esg_leads.flows.cli import main

raise SystemExit(main())
