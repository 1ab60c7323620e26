"""bench/growth.py's pure parts: the per-step figures, the growth ratio and its verdict, the
table and the command line (nothing is timed here: figures belong to the bench)."""

from __future__ import annotations

import pytest

from bench import growth
from bench.common import Sample


def sample(*ms: float) -> Sample:
    return Sample(tuple(m / 1e3 for m in ms))


def fan(n: int, *ms: float) -> growth.Point:
    return growth.Point("fan", n, sample(*ms))


def seq(n: int, empty_ms: float, *ms: float) -> growth.Point:
    return growth.Point("seq", n, sample(*ms), sample(empty_ms, empty_ms, empty_ms))


def test_a_fan_outs_step_is_its_median_total_over_n() -> None:
    assert fan(100, 30.0, 20.0, 25.0).per_step_ms == pytest.approx(0.25)


def test_a_sequential_step_is_the_difference_of_medians_over_n() -> None:
    # (median 25 ms - empty 5 ms) / 100 steps
    assert seq(100, 5.0, 30.0, 20.0, 25.0).per_step_ms == pytest.approx(0.2)


def test_a_sequential_point_needs_its_empty_runs() -> None:
    with pytest.raises(ValueError, match="empty"):
        _ = growth.Point("seq", 100, sample(1.0)).per_step_ms


def test_the_ratio_is_the_largest_sizes_step_over_the_smallests() -> None:
    points = [fan(5_000, 2_000.0), fan(100, 25.0), fan(1_000, 300.0)]  # in any order
    assert growth.growth_ratio(points) == pytest.approx(0.4 / 0.25)


@pytest.mark.parametrize(
    "points",
    [
        [],
        [fan(100, 25.0)],
        [fan(100, 25.0), fan(100, 26.0)],  # one size twice is no growth to judge
        [seq(100, 5.0, 4.0), seq(10_000, 5.0, 3_000.0)],  # smallest per-step is negative
    ],
    ids=["none", "one size", "one size twice", "smallest not positive"],
)
def test_the_ratio_needs_two_sizes_and_a_positive_base(points: list[growth.Point]) -> None:
    assert growth.growth_ratio(points) is None


@pytest.mark.parametrize(
    ("ratio", "flat"), [(1.0, True), (1.5, True), (1.51, False), (0.8, True), (None, None)]
)
def test_flat_means_at_most_one_and_a_half_times(ratio: float | None, flat: bool | None) -> None:
    assert growth.is_flat(ratio) is flat


def test_the_table_has_a_column_per_size_and_a_verdict_per_row() -> None:
    points: list[tuple[growth.Transport, growth.Point]] = [
        ("embedded", fan(100, 25.0)),
        ("embedded", fan(5_000, 1_500.0)),  # 0.3 ms/step: 1.2x, flat
        ("embedded", seq(100, 5.0, 25.0)),
        ("embedded", seq(10_000, 5.0, 4_005.0)),  # 0.4 ms/step: 2x, not flat
        ("http", fan(100, 50.0)),  # one size: no verdict
    ]
    header, rows = growth.table(points)
    assert header == [
        "transport",
        "workload",
        "N=100",
        "N=5,000",
        "N=10,000",
        "largest/smallest",
        "flat (<= 1.5x)?",
    ]
    assert [r[0] for r in rows] == ["embedded", "embedded", "http"]
    assert rows[0][2:] == ["0.250", "0.300", "-", "1.20x", "yes"]
    assert rows[1][2:] == ["0.200", "-", "0.400", "2.00x", "NO"]
    assert rows[2][2:] == ["0.500", "-", "-", "n/a", "n/a"]
    text = growth.summary(points)
    assert "embedded fan: flat (largest/smallest <= 1.5x) holds" in text
    assert "embedded seq: flat (largest/smallest <= 1.5x) does NOT hold" in text
    assert "http fan" not in text.splitlines()[-1]


def test_the_records_hold_each_point_and_each_ratio() -> None:
    records = growth.records([("http", fan(100, 25.0)), ("http", fan(1_000, 500.0))])
    assert [(r["n"], r["metric"], r["system"]) for r in records] == [
        (100, "per_step", "mainspring-http"),
        (1_000, "per_step", "mainspring-http"),
        (None, "ratio", "mainspring-http"),
    ]
    assert records[-1]["value"] == pytest.approx(2.0)
    assert records[0]["runs_ms"] == pytest.approx([25.0])


def test_large_sizes_are_measured_fewer_times_after_a_small_warm_up() -> None:
    assert growth.plan(100) == growth.Plan(warmup_n=100, reps=growth.MANY_REPS)
    assert growth.plan(1_000) == growth.Plan(warmup_n=1_000, reps=growth.MANY_REPS)
    assert growth.plan(10_000) == growth.Plan(warmup_n=growth.WARMUP_N, reps=growth.FEW_REPS)
    assert growth.FEW_REPS < growth.MANY_REPS


@pytest.mark.parametrize(
    ("only", "points"),
    [
        (
            None,
            [
                *[("fan", n) for n in (100, 1_000, 5_000)],
                *[("seq", n) for n in (100, 1_000, 10_000)],
            ],
        ),
        ("seq", [("seq", 100), ("seq", 1_000), ("seq", 10_000)]),
        ("seq:10000, fan:100", [("fan", 100), ("seq", 10_000)]),
        ("fan:5000,fan", [("fan", 100), ("fan", 1_000), ("fan", 5_000)]),
    ],
)
def test_only_selects_shapes_and_sizes(only: str | None, points: list[tuple[str, int]]) -> None:
    argv = [] if only is None else ["--only", only]
    args = growth.parse_args(argv)
    assert args.points == points
    assert not args.http
    assert args.json is None


@pytest.mark.parametrize("only", ["fan:10000", "seq:5000", "par", "seq:ten", ",", ""])
def test_only_refuses_what_is_not_run(only: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        growth.parse_args(["--only", only])
    assert exited.value.code == 2
    assert "--only" in capsys.readouterr().err


def test_http_and_json_are_parsed() -> None:
    args = growth.parse_args(["--http", "--json", "out/g.json", "--only", "fan:100"])
    assert args.http
    assert str(args.json) == "out/g.json"
    assert args.points == [("fan", 100)]
