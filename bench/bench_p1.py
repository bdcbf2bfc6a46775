"""P1 decoding: telegrams per second through wattmesh's decoder beside bare dsmr-parser.

The decoder (framing, CRC, parse, exact Wh/W conversion, counting) runs on a stream
of DSMR 5 telegrams; the baseline, in the same run, is dsmr-parser's own
``TelegramParser.parse`` of the same telegrams (CRC and parse, already framed).
A P1 port delivers one telegram per second, so either is far faster than needed;
the figure is the CPU share one telegram per second costs on this machine.

    python bench/bench_p1.py [--telegrams 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _machine import machine_line
from dsmr_parser import telegram_specifications
from dsmr_parser.parsers import TelegramParser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.p1kit import telegram
from wattmesh.agents.metering.p1 import P1Decoder


def _stream(count: int) -> list[bytes]:
    return [
        telegram(
            stamp=f"2612011{i // 3600 % 10}{i // 60 % 60:02d}{i % 60:02d}W",
            used_t1=f"{12345 + i // 1000:06d}.{i % 1000:03d}",
        )
        for i in range(count)
    ]


def _median_s(run: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--telegrams", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    telegrams = _stream(args.telegrams)
    data = b"".join(telegrams)
    texts = [t.decode("ascii") for t in telegrams]
    bare = TelegramParser(telegram_specifications.V5)

    def ours() -> None:
        decoder = P1Decoder()
        readings = decoder.feed(data)
        assert len(readings) == len(telegrams) and decoder.counts.bad == 0

    def baseline() -> None:
        for text in texts:
            bare.parse(text)

    ours_s = _median_s(ours, args.repeat)
    base_s = _median_s(baseline, args.repeat)
    n = len(telegrams)
    print(machine_line())
    print(f"{n} DSMR 5 telegrams ({len(data) / n:.0f} bytes each), median of {args.repeat}")
    print(f"wattmesh P1Decoder: {ours_s * 1e6 / n:7.0f} us/telegram  {n / ours_s:8.0f}/s")
    print(f"bare dsmr-parser:   {base_s * 1e6 / n:7.0f} us/telegram  {n / base_s:8.0f}/s")
    print(
        f"overhead: {ours_s / base_s:.2f}x; one telegram/s costs {ours_s / n * 100:.3f}% of a core"
    )


if __name__ == "__main__":
    main()
