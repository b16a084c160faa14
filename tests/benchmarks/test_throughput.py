"""python -m benchmarks.throughput at the tiny preset: the variants, the paired ratios, the acceptance rows."""
import json

import pytest

from benchmarks import throughput

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_throughput_tiny(tmp_path, capsys):
    argv = ["--preset", "tiny", "--batch-sizes", "16", "--repeats", "2", "--warmup", "1", "--min-time", "0",
            "--device", "cpu", "--out", str(tmp_path), "--no-progress"]
    assert throughput.main(argv) == 0
    printed = capsys.readouterr().out
    assert "r32 = bare(32) / bare(64)" in printed and ("PASS" in printed or "FAIL" in printed)
    result = json.loads((tmp_path / "throughput.json").read_text())
    assert result["meta"]["versions"]["torch"] and result["meta"]["config"]["preset"] == "tiny"
    (block,) = result["results"]
    assert block["batch_size"] == 16 and block["num_patches"] == 64
    rows = {(r["variant"], r["k"]): r for r in block["rows"]}
    assert set(rows) == {(v, k) for v in throughput.DEFAULT_VARIANTS for k in (64, 48, 32, 16, 8)}
    for (variant, k), r in rows.items():
        assert r["ideal"] == k / 64
        assert len(r["times_s"]) == 2 and r["median_s"] > 0
        assert r["overhead_vs_bare"] == pytest.approx(r["median_s"] / rows[("bare", k)]["median_s"])
        if k == 64:
            assert r["ratio_to_full"] == 1.0
    names = [a["name"] for a in block["acceptance"]]
    assert names[0] == "r32 = bare(32) / bare(64)" and len(names) == 4
    for a in block["acceptance"]:
        assert a["pass"] == (a["value"] <= a["target"])
    r32 = block["acceptance"][0]
    assert r32["ratio_of_medians"] == pytest.approx(rows[("bare", 32)]["median_s"] / rows[("bare", 64)]["median_s"])
    paired = [a / b for a, b in zip(rows[("bare", 32)]["times_s"], rows[("bare", 64)]["times_s"])]
    assert r32["value"] == pytest.approx(sorted(paired)[0] / 2 + sorted(paired)[1] / 2)  # median of two
    assert (tmp_path / "throughput.png").read_bytes()[:8] == PNG_MAGIC


def test_threads_are_recorded_and_the_callers_count_restored(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    argv = ["--preset", "tiny", "--batch-sizes", "16", "--ks", "64,8", "--variants", "bare,env/count/progress",
            "--repeats", "1", "--warmup", "0", "--min-time", "0", "--device", "cpu", "--threads", "1",
            "--out", str(tmp_path), "--no-progress"]
    assert throughput.main(argv) == 0
    assert json.loads((tmp_path / "throughput.json").read_text())["meta"]["torch_threads"] == 1
    assert torch.get_num_threads() == before
    with pytest.raises(SystemExit, match="--threads must be a positive integer, got 0"):
        throughput.main(argv[:-5] + ["--threads", "0", "--out", str(tmp_path), "--no-progress"])


def test_the_kept_only_bare_step_trains_as_the_embed_all_step():
    """BareStep(embed="kept") embeds only the kept patches of each image; the update is the
    one the embed-all step makes with the same per-image keep (computed that other way)."""
    import numpy as np
    import torch

    from benchmarks.bare_step import BareStep

    vit = dict(image_size=32, patch_size=4, num_classes=10, channels=3, dim=32, depth=1, heads=2, dim_head=16,
               mlp_dim=64)
    kept, whole = (BareStep(vit, 8, torch.device("cpu"), "eager", seed=3, embed=e) for e in ("kept", "all"))
    mask = np.zeros((8, 64), dtype=bool)
    rng = np.random.default_rng(0)
    for row in mask:
        row[rng.choice(64, 5, replace=False)] = True
    keep = kept.keep(mask)
    assert keep.shape == (8, 5) and all(set(keep[i].tolist()) == set(np.flatnonzero(mask[i])) for i in range(8))
    kept(keep)
    whole(keep)
    # The same forward numbers; the backward sums the embedding's gradient over 5 rows
    # instead of 64 with 59 zeros, so the order of the sums differs in the last bits.
    for a, b in zip(kept.model.parameters(), whole.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    uneven = mask.copy()
    uneven[0, np.flatnonzero(~mask[0])[0]] = True
    with pytest.raises(ValueError, match="same count in every row"):
        kept.keep(uneven)
    with pytest.raises(ValueError, match="needs embed='kept'"):
        BareStep(vit, 8, torch.device("cpu"), "compile-forward")


def test_the_count_step_is_reported_over_its_kept_only_floor(tmp_path, capsys):
    argv = ["--preset", "tiny", "--batch-sizes", "16", "--ks", "64,8", "--variants", "bare/kept,env/count/progress",
            "--repeats", "1", "--warmup", "0", "--min-time", "0", "--device", "cpu", "--threads", "1",
            "--out", str(tmp_path), "--no-progress"]
    assert throughput.main(argv) == 0
    assert "env.step / bare step embedding the same k kept patches" in capsys.readouterr().out
    (block,) = json.loads((tmp_path / "throughput.json").read_text())["results"]
    rows = {(r["variant"], r["k"]): r for r in block["rows"]}
    for k in (64, 8):
        want = rows[("env/count/progress", k)]["median_s"] / rows[("bare/kept", k)]["median_s"]
        assert rows[("env/count/progress", k)]["overhead_vs_bare_kept"] == pytest.approx(want)
        assert rows[("bare/kept", k)]["overhead_vs_bare"] is None  # no embed-all bare step asked for
