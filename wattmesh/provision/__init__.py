"""``wattmesh provision``: everything a neighbourhood needs, in one folder (issue 15)."""
