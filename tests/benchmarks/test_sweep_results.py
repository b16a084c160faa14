"""benchmarks.sweep.results: a run's row, the CSV's columns, rows read back from older files."""
from benchmarks.sweep.results import RUN_FIELDS, csv_fields, fill_eval_split, record


def test_a_row_carries_the_runners_eval_split_and_its_grid_point():
    metrics = {"meta": {"eval_split": "val"}, "summary": {"test_accuracy": 0.5}, "epochs": [{"epoch": 1}]}
    point = {"dataset": "digits", "setting": "alpha=0.3", "values": {"alpha": 0.3}}
    assert record(point, "random", 2, metrics) == {
        "selector": "random", "seed": 2, "dataset": "digits", "setting": "alpha=0.3", "alpha": 0.3,
        "test_accuracy": 0.5, "curve": [{"epoch": 1}], "eval_split": "val"}


def test_csv_columns_put_the_grid_after_the_dataset():
    assert csv_fields({}) == RUN_FIELDS
    fields = csv_fields({"grid": {"alpha": [0.3], "preset": ["tiny"]}})
    assert fields[:6] == ("selector", "seed", "dataset", "setting", "alpha", "preset")
    assert fields[6:] == RUN_FIELDS[3:] and "eval_split" not in fields


def test_rows_from_before_eval_split_get_their_points_split():
    cfg = {"protocol": "val", "env": {"val_fraction": 0.1}}
    points = [{"setting": "v=0", "protocol": "val", "env": {"val_fraction": 0.0}},
              {"setting": "v=1", "protocol": "val", "env": {"val_fraction": 0.1}}]
    runs = [{"setting": "v=0"}, {"setting": "v=1"}, {"setting": "gone"}, {"setting": "v=0", "eval_split": "val"}]
    fill_eval_split(runs, cfg, points)
    assert [r["eval_split"] for r in runs] == ["test", "val", "val", "val"]  # a recorded split is kept
    paper = [{}]
    fill_eval_split(paper, {"protocol": "paper", "env": {}}, [{"protocol": "paper", "env": {}}])
    assert paper[0]["eval_split"] == "test"
