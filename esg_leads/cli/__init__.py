"""The ``esg-leads`` command line: the top layer, above replay/ and flows/."""
