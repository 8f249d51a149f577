"""esg-leads: streaming qualification of real-estate investor leads by ESG fit.

One installed namespace holds the project's packages (``esg_leads.flows``,
``esg_leads.operators``, ...), so the wheel adds a single top-level name to
site-packages instead of six generic ones (``flows``, ``schemas``...) that collide with
other projects. In the repository the packages stay top-level folders, as the design
lays them out; the wheel maps them under this package (``package-dir`` in
pyproject.toml). In a source checkout this package therefore also searches the
repository root, so ``esg_leads.flows`` is ``./flows`` whether or not it is installed.
"""

from pathlib import Path

_here = Path(__file__).resolve().parent
if not (_here / "flows").is_dir():  # a source checkout, not the installed wheel
    __path__.append(str(_here.parent))  # noqa: F821 - a package's module global
