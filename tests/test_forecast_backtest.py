"""Rolling-origin backtests (forecasting.backtesting) and ``wattmesh forecast backtest``:
the scores on hand-computed examples, gaps, the CSV checks and the command's errors.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from wattmesh.broker.errors import ConfigError
from wattmesh.cli.dispatch import main
from wattmesh.forecasting.backtesting import mase_scale_w, parse_measured_csv, run_backtest
from wattmesh.forecasting.models import ModelContext

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def _csv(
    values: list[float | None], *, step_s: int = 3600, skip: frozenset[int] = frozenset()
) -> str:
    from datetime import UTC, datetime

    rows = ["timestamp,value_w"]
    for i, v in enumerate(values):
        if i in skip:
            continue
        stamp = datetime.fromtimestamp(T0 + i * step_s, UTC).isoformat()
        rows.append(f"{stamp},{'' if v is None else v}")
    return "\n".join(rows) + "\n"


def _four_days() -> list[float | None]:
    """Day 0 at 148 W, days 1 and 2 at 100 W, day 3 alternating 100 and 140 W."""
    return [148.0] * 24 + [100.0] * 48 + [100.0 if h % 2 == 0 else 140.0 for h in range(24)]


def test_scores_match_a_hand_computed_example() -> None:
    series = parse_measured_csv(_csv(_four_days()), name="t")
    report = run_backtest(
        series, ctx=ModelContext("demand"), horizon_s=86_400, origins=1, models=["naive-day"]
    )
    score = report.models["naive-day"]
    # forecast: day 2 (100 W), its calibration errors on day 2 are all 0, so p10 = p90 = 100
    assert score.mae_w == pytest.approx(20.0)  # half the hours 0 off, half 40 off
    assert score.rmse_w == pytest.approx(math.sqrt(1600 / 2))
    # scale: the window's one-day naive MAE, |100 - 148| on day 1 and 0 on day 2
    assert score.mase == pytest.approx(20.0 / 24.0)
    assert score.coverage_80 == pytest.approx(0.5)
    assert score.width_80_w == pytest.approx(0.0)
    assert score.nmae == pytest.approx(20.0 / 120.0)
    assert report.selected == "naive-day"
    assert report.to_json()["horizon_h"] == 24


def test_pv_scores_daylight_and_capacity() -> None:
    day = [0.0] * 6 + [1000.0] * 12 + [0.0] * 6
    last = [0.0] * 6 + [1000.0 if h % 2 else 1400.0 for h in range(12)] + [0.0] * 6
    series = parse_measured_csv(_csv(day * 9 + last), name="pv")
    ctx = ModelContext("pv", capacity_w=2000)
    report = run_backtest(series, ctx=ctx, horizon_s=86_400, origins=1, models=["naive-day"])
    score = report.models["naive-day"]
    assert score.mae_w == pytest.approx(6 * 400 / 24)
    assert score.daylight_mae_w == pytest.approx(6 * 400 / 12)
    assert score.nrmse_capacity == pytest.approx(math.sqrt(6 * 400**2 / 24) / 2000)
    row = report.to_json()["models"]["naive-day"]
    assert set(row) >= {"daylight_mae_w", "nrmse_capacity", "mae_w", "mase", "width_80_w"}


def test_gaps_are_reported_filled_for_training_and_never_scored() -> None:
    values = _four_days()
    values[30] = None  # an empty value in the training window
    text = _csv(values, skip=frozenset({73, 75}))  # two missing rows in the scored day
    series = parse_measured_csv(text, name="gappy")
    assert series.gaps == 3
    energy = series.energy_wh()
    assert energy[30] == energy[6] == 148  # filled from a day earlier
    report = run_backtest(
        series, ctx=ModelContext("demand"), horizon_s=86_400, origins=1, models=["naive-day"]
    )
    assert report.gaps == 3
    # 22 hours scored: hours 73 and 75 (odd, 140 W) are missing, so 12 even hours score 0
    # and 10 odd hours score 40
    assert report.models["naive-day"].mae_w == pytest.approx(400 / 22)


def test_mase_scale_uses_measured_pairs_only() -> None:
    assert mase_scale_w([1.0, None, 3.0, 5.0, 2.0], 2) == pytest.approx((2 + 1) / 2)
    assert math.isnan(mase_scale_w([1.0, None], 1))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("time,value_w\n2026-01-01T00:00:00Z,1\n", "missing column(s) timestamp"),
        ("timestamp,value\n2026-01-01T00:00:00Z,1\n", "missing column(s) value_w"),
        (
            "timestamp,value_w\n2026-01-01T01:00:00Z,1\n2026-01-01T00:00:00Z,1\n",
            "line 3: timestamps are not sorted",
        ),
        (
            "timestamp,value_w\n2026-01-01T00:00:00Z,1\n2026-01-01T01:00:00+01:00,1\n",
            "line 3: duplicate timestamp",
        ),
        ("timestamp,value_w\n2026-01-01T00:00:00Z,1\n2026-01-01T01:00:00Z,lots\n", "not a number"),
        ("timestamp,value_w\n2026-01-01T00:00:00Z,1\n2026-01-01T01:00:00Z,inf\n", "not a finite"),
        ("timestamp,value_w\nnoon,1\n", "line 2: bad timestamp"),
        ("timestamp,value_w\n2026-01-01T00:00:00Z,1\n2026-01-01T00:01:00Z,1\n", "5 minutes"),
        (
            "timestamp,value_w\n2026-01-01T00:00:00Z,1\n2026-01-01T00:15:00Z,1\n"
            "2026-01-01T00:40:00Z,1\n",
            "regular",
        ),
        ("timestamp,value_w\n2026-01-01T00:00:00Z,1\n", "fewer than two rows"),
    ],
)
def test_bad_files_are_one_clear_error(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_measured_csv(text, name="f.csv")
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors exit from inside
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--target", "pv"], "--capacity-w"),
        (["--target", "demand", "--models", "naive-day,clearsky-index"], "no demand model"),
        (["--target", "demand", "--origins", "40"], "too short for 40 origins"),
        (["--target", "demand", "--horizon", "25m"], "not a whole number"),
        (["--target", "demand", "--horizon", "soon"], "duration"),
        (["--target", "demand", "--site", "x"], "--site"),
    ],
)
def test_command_errors_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    data = tmp_path / "d.csv"
    data.write_text(_csv(_four_days() * 3))
    code, out, err = _run(["forecast", "backtest", "--data", str(data), *extra], capsys)
    assert code == 2
    assert needle in err and err.count("\n") == 1 and out == ""


def test_command_on_a_missing_or_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.csv"
    code, _, err = _run(
        ["forecast", "backtest", "--data", str(missing), "--target", "demand"], capsys
    )
    assert code == 2 and "cannot read" in err and err.count("\n") == 1
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = _run(["forecast", "backtest", "--data", str(bad), "--target", "demand"], capsys)
    assert code == 2 and err.count("\n") == 1


def test_command_prints_the_json_shape(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text(_csv(_four_days() * 3))
    args = ["forecast", "backtest", "--data", str(data), "--target", "demand"]
    args += ["--horizon", "24h", "--origins", "3", "--models", "mean-7d", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "wattmesh", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["origins"] == 3 and out["horizon_h"] == 24 and out["gaps"] == 0
    assert list(out["models"]) == ["naive-day", "mean-7d"]  # naive-day always runs
    for row in out["models"].values():
        assert {"mae_w", "rmse_w", "mase", "coverage_80", "width_80_w"} <= set(row)
    assert out["selected"] in out["models"]


def test_quarter_hour_data_and_a_90_minute_horizon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # multiples of 4 W, so whole Wh per quarter hour (models work in integer Wh)
    quarter = [float(100 + 12 * (i % 96 // 4)) for i in range(96 * 5)]
    data = tmp_path / "q.csv"
    data.write_text(_csv(quarter, step_s=900))
    args = ["forecast", "backtest", "--data", str(data), "--target", "demand"]
    code, out, err = _run([*args, "--horizon", "90m", "--origins", "2", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["horizon_h"] == 1.5 and report["interval_s"] == 900
    # a profile that repeats daily: yesterday is exact
    assert report["models"]["naive-day"]["mae_w"] == 0.0


def test_the_command_reads_a_weather_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime

    data = tmp_path / "d.csv"
    data.write_text(_csv(_four_days() * 3))
    weather = tmp_path / "w.csv"
    rows = ["timestamp,ghi_w_m2,temp_c"]
    for i in range(24 * 12):
        stamp = datetime.fromtimestamp(T0 + 3600 * i, UTC).isoformat()
        rows.append(f"{stamp},0,{i % 24}")
    weather.write_text("\n".join(rows) + "\n")
    args = ["forecast", "backtest", "--data", str(data), "--target", "demand", "--json"]
    more = ["--weather", str(weather), "--models", "mean-7d", "--origins", "3"]
    code, out, err = _run([*args, *more], capsys)
    assert code == 0, err
    assert json.loads(out)["selected"] in {"naive-day", "mean-7d"}
    bad = tmp_path / "bad_weather.csv"
    bad.write_text("timestamp,temp_c\n")
    code, _, err = _run([*args, "--weather", str(bad)], capsys)
    assert code == 2 and "missing column" in err


def test_zero_origins_is_an_error() -> None:
    series = parse_measured_csv(_csv(_four_days()), name="t")
    with pytest.raises(ConfigError, match="too short"):
        run_backtest(series, ctx=ModelContext("demand"), horizon_s=86_400, origins=0)


def test_a_services_energy_history_backtests_like_its_csv() -> None:
    from wattmesh.forecasting.backtesting import MeasuredSeries
    from wattmesh.forecasting.models import Series

    values = [int(v or 0) for v in _four_days()]
    from_energy = MeasuredSeries.from_energy(Series(T0, 3600, tuple(values)))
    from_csv = parse_measured_csv(_csv(_four_days()), name="t")
    assert from_energy == from_csv
