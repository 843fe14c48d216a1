"""The CLI in-process through main(argv): exit codes and what it prints."""

from __future__ import annotations

import json

from reiddata.cli import main


def test_sources_lists_every_source_with_its_layout(capsys):
    assert main(["sources"]) == 0
    out = capsys.readouterr().out
    for name in ("market1501:", "dukemtmc-reid:", "msmt17:"):
        assert name in out
    assert "bounding_box_train/0002_c1s1_000451_03.jpg" in out
    assert "list_train.txt" in out


def test_synth_convert_stats_verify(tmp_path, capsys):
    tree, out = tmp_path / "tree", tmp_path / "shards"
    assert main(["synth", "market1501", str(tree), "--identities", "8", "--seed", "1"]) == 0
    assert main(["convert", "market1501", str(tree), str(out), "--quiet", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "dropped 2: junk pid -1 in bounding_box_test/" in printed
    assert main(["stats", str(out), "--json", str(tmp_path / "s.json"), "--plots", str(tmp_path / "plots")]) == 0
    report = capsys.readouterr().out
    assert "protocol  match   queries" in report
    assert "semantic IDs per group:" in report
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["splits"]["train"]["ids"] == 4
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["attributes.png", "sizes.png", "splits.png"]
    assert main(["verify", str(out)]) == 0


def test_synth_variant_default_is_the_usual_layout_and_a_wrong_one_is_named(tmp_path, capsys):
    for variant, name in (("default", "plain"), ("flat", "flat")):
        assert main(["synth", "agreid-v2", str(tmp_path / name), "--identities", "6", "--variant", variant]) == 0
    plain = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*"))
    assert plain == sorted(p.relative_to(tmp_path / "flat") for p in (tmp_path / "flat").rglob("*"))
    assert main(["synth", "market1501", str(tmp_path / "m"), "--variant", "v2"]) == 2
    assert "market1501 has no variant 'v2': expected one of none" in capsys.readouterr().err


def test_errors_exit_non_zero_with_the_rule(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["convert", "market1501", str(tmp_path / "empty"), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'empty'}: is not a market1501 tree: missing bounding_box_train")
    assert main(["stats", str(tmp_path)]) == 2
    assert "is not a converted reiddata dataset (no manifest.json)" in capsys.readouterr().err
    assert main(["convert", "nope", str(tmp_path), str(tmp_path / "o")]) == 2
    assert "unknown source 'nope'" in capsys.readouterr().err


def test_verify_exits_1_naming_the_bad_shard(converted, tmp_path, capsys):
    import shutil

    out = tmp_path / "d"
    shutil.copytree(converted("dukemtmc-reid"), out)
    (out / "query-000000.tar").write_bytes(b"\0" * 1024)
    assert main(["verify", str(out)]) == 1
    assert f"error: {out / 'query-000000.tar'}:" in capsys.readouterr().err
