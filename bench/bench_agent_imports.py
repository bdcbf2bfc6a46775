"""What each part of the agent's import closure costs in resident memory.

One fresh interpreter imports the closure of ``wattmesh agent`` (P1 meter) step by
step, in the order the agent loads it, and prints the RSS after each step (VmRSS from
/proc/self/status) and the modules it added; then the Python-level allocations of
the whole closure by package (tracemalloc, in a second fresh interpreter). Import-only:
the running agent adds its connections, threads and buffers on top
(bench/bench_agent_footprint.py measures that).

    .venv/bin/python bench/bench_agent_imports.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The baseline of bench_agent_footprint first (asyncio, aiomqtt, cryptography), then
# what the agent adds, in its own order.
STEPS = (
    "asyncio",
    "aiomqtt",
    "cryptography.hazmat.primitives.serialization",
    "argparse",
    "sqlite3",
    "decimal",
    "zoneinfo",
    "dsmr_parser.obis_references",
    "dsmr_parser.value_types",
    "wattmesh.broker.messages",
    "wattmesh.broker.transport",
    "wattmesh.config.agent_schema",
    "wattmesh.config.agent_config",
    "wattmesh.agents.lifecycle",
    "wattmesh.agents.metering.open",
)

_STEPWISE = r"""
import importlib, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")
previous = rss()
print(f"{'interpreter':45} {previous:6.1f} MB")
for name in sys.argv[1:]:
    before = set(sys.modules)
    importlib.import_module(name)
    now = rss()
    added = sorted({m.split(".")[0] for m in set(sys.modules) - before})
    print(f"{name:45} {now:6.1f} MB  +{now - previous:4.1f}  {' '.join(added)[:60]}")
    previous = now
"""

_BY_PACKAGE = r"""
import collections, tracemalloc
tracemalloc.start()
import wattmesh.cli, wattmesh.cli.agent_cli
from wattmesh.config.agent_config import load_agent_config_isolated
import wattmesh.agents.lifecycle, wattmesh.agents.metering.open
sizes = collections.Counter()
for stat in tracemalloc.take_snapshot().statistics("filename"):
    name = stat.traceback[0].filename
    if "site-packages/" in name:
        name = name.split("site-packages/")[1].split("/")[0]
    elif "/lib/python3" in name:
        name = "stdlib " + name.split("/lib/python3")[1].split("/")[1]
    sizes[name] += stat.size
print(f"Python allocations of the closure: {sum(sizes.values()) / 1e6:.1f} MB; largest:")
for name, size in sizes.most_common(12):
    print(f"  {size / 1e6:5.2f} MB  {name}")
"""


def main() -> None:
    for code, args in ((_STEPWISE, STEPS), (_BY_PACKAGE, ())):
        result = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        print(result.stdout, end="")


if __name__ == "__main__":
    main()
