"""``wattmesh simulate``: a whole neighbourhood on one machine (PV, demand, scenario, report)."""
