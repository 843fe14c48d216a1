"""Pages to look at, tested in a real browser: ``reiddata show`` and the failure report."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from browser import Page, browser  # noqa: F401 - the fixture
from conftest import cpu_train_config

from reiddata import convert, sample_clips, synth
from reiddata.cli import main as reiddata_main
from reiddata.manifest import shard_table
from reiddata.pages import show
from reiddata.pages.dataset import filmstrip
from reiddata.pages.html import page_json
from reiddata.shard_format import content_version, manifest_digests
from reidmodels.evaluation.failures import pick_queries

HOSTILE = '<script>window.__pwned = 1</script>"\'<img src=x onerror="window.__pwned = 2">'


def _open(browser, index: Path) -> Page:  # noqa: F811
    return Page(browser, index.resolve().as_uri())


def _check_images(page: Page) -> list[dict]:
    images = page.visible_images()
    assert images, "the page shows no image"
    broken = [i["src"] for i in images if i["width"] == 0]
    assert not broken, f"images that did not decode: {broken[:5]}"
    return images


def test_market_page_loads_filters_and_pages(browser, converted, tmp_path):  # noqa: F811
    built = show(converted("market1501"), tmp_path / "page", png=True, per_page=5)
    assert built["warnings"] == [] and built["thumbnails"] == len(
        pq.read_table(converted("market1501") / "index.parquet")
    )
    page = _open(browser, Path(built["page"]))
    _check_images(page)
    count = page.text("#count")
    total = re.match(r"(\d+) identities, (\d+) images", count)
    assert total, count
    assert page.text("#page-label") == f"page 1 / {-(-int(total[1]) // 5)}"
    first = page.page.locator(".identity h3").first.inner_text()
    # a filter changes what is shown: camera 1 only
    page.page.select_option("#filter-camera", "1")
    after = page.text("#count")
    assert after != count
    cams = page.page.eval_on_selector_all(".camera .label", "(ls) => [...new Set(ls.map((l) => l.textContent))]")
    assert cams == ["cam 1"]
    # an attribute filter: every card left says that value
    page.page.select_option("#filter-camera", "-1")
    page.page.select_option("#filter-attribute-0", "1")
    facts = page.page.eval_on_selector_all(".identity", "(cards) => cards.map((c) => c.textContent)")
    value = page.page.eval_on_selector("#filter-attribute-0", "(s) => s.options[s.selectedIndex].text")
    name = page.page.eval_on_selector("#filter-attribute-0", "(s) => s.parentElement.firstChild.textContent.trim()")
    assert facts and all(f"{name}: {value}" in f for f in facts)
    # paging
    page.page.select_option("#filter-attribute-0", "-1")
    page.page.click("#next-page")
    assert page.text("#page-label").startswith("page 2 /")
    assert page.page.locator(".identity h3").first.inner_text() != first
    _check_images(page)
    page.page.screenshot(path=str(tmp_path / "market.png"))
    assert page.errors == []
    page.close()
    assert len(built["png"]) == 8 and all(Path(p).stat().st_size > 1000 for p in built["png"])


def test_aerial_ground_cards_put_views_side_by_side(browser, converted, tmp_path):  # noqa: F811
    built = show(converted("agreid-v2", "nested"), tmp_path / "page")
    page = _open(browser, Path(built["page"]))
    _check_images(page)
    views = page.page.eval_on_selector_all(
        ".identity", "(cs) => cs.map((c) => [...c.querySelectorAll('.view h4')].map((h) => h.textContent))"
    )
    assert any({"aerial", "ground"} <= set(v) for v in views)
    page.page.select_option("#filter-view", label="aerial")
    shown = page.page.eval_on_selector_all(".view h4", "(hs) => [...new Set(hs.map((h) => h.textContent))]")
    assert shown == ["aerial"]
    page.page.screenshot(path=str(tmp_path / "agreid.png"))
    assert page.errors == []
    page.close()


def test_tracklets_show_as_filmstrips_with_the_sampled_frames_marked(browser, converted, tmp_path):  # noqa: F811
    data = converted("mars")
    built = show(data, tmp_path / "page", clip_length=4, frames=6)
    page = _open(browser, Path(built["page"]))
    _check_images(page)
    strips = page.page.locator(".strip").count()
    picked = page.page.locator(".strip .picked").count()
    assert strips > 0 and 0 < picked <= 4 * strips
    # the page's marks are the sampler's frames
    index = pq.read_table(data / "index.parquet")
    key, n, split = (index.column(c)[0].as_py() for c in ("key", "num_frames", "split"))
    shown, marks = filmstrip(n, key=key, train=split == "train", mode="tsn", length=4, frames=6)
    taken = set(sample_clips(n, length=4, train=split == "train", index=zlib.crc32(key.encode()))[0])
    assert [f for f, m in zip(shown, marks) if m] == sorted(taken)[:6] and len(shown) == min(6, n)
    page.page.screenshot(path=str(tmp_path / "mars.png"))
    assert page.errors == []
    page.close()


def test_filmstrip_fills_with_evenly_spaced_frames():
    shown, marks = filmstrip(100, key="train_0000001", train=False, mode="tsn", length=4, frames=8)
    assert len(shown) == 8 and sum(marks) == 4 and shown == sorted(shown) and shown[0] == 0 and shown[-1] == 99


@pytest.fixture
def hostile_dataset(tmp_path) -> Path:
    """A Market-1501 dataset with one image that does not decode (scan cut, end marker put
    back: the converter's cheap checks pass) and hostile text in the index and manifest."""
    tree = synth("market1501", tmp_path / "tree", identities=6)
    victim = sorted(tree.glob("*/query/*.jpg"))[0]
    data = victim.read_bytes()
    sos = data.index(b"\xff\xda")
    victim.write_bytes(data[: sos + 40] + b"\xff\xd9")
    out = tmp_path / "data"
    convert("market1501", tree, out, shard_size=40)
    index = pq.read_table(out / "index.parquet")
    sources = index.column("source").to_pylist()
    sources[0] = HOSTILE
    index = index.set_column(index.schema.get_field_index("source"), "source", pa.array(sources))
    pq.write_table(index, out / "index.parquet")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["dropped"][HOSTILE] = 3
    manifest["digests"] = manifest_digests(manifest)
    hashes = {n: s["sha256"] for n, s in shard_table(manifest).items()}
    manifest["version"] = content_version(hashes, pq.read_table(out / "index.parquet"), manifest["digests"])
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out


def test_an_image_that_does_not_decode_is_a_placeholder_and_a_named_warning(browser, hostile_dataset, tmp_path, capsys):  # noqa: F811
    assert reiddata_main(["show", str(hostile_dataset), "--out", str(tmp_path / "page"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"warning: query_\d{7} did not decode \(ValueError: .*\): shown crossed out", err), err
    page = _open(browser, tmp_path / "page" / "index.html")
    _check_images(page)
    warning = page.text("#warnings")
    assert "1 images failed to decode" in warning and "query_" in warning
    # hostile text is shown as text: no script ran, no element was made of it
    assert page.page.evaluate("window.__pwned") is None
    assert HOSTILE in page.page.inner_text("body")
    assert page.page.locator("main script").count() == 0
    pid = pq.read_table(hostile_dataset / "index.parquet").column("pid")[0].as_py()  # the hostile source's row
    page.page.fill("#filter-pid", str(pid))
    titles = page.page.eval_on_selector_all("img.thumb", "(is) => is.map((i) => i.title)")
    assert sum(HOSTILE in t for t in titles) == 1 and page.page.evaluate("window.__pwned") is None
    assert page.errors == []
    page.close()


def test_page_json_cannot_close_its_script():
    text = page_json({"v": "</script><script>alert(1)</script>&\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"v": "</script><script>alert(1)</script>&\u2028"}


def test_show_never_replaces_a_folder_it_did_not_write(converted, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert reiddata_main(["show", str(converted("market1501")), "--out", str(foreign), "--quiet"]) == 2
    assert (foreign / "notes.txt").read_text() == "keep me" and sorted(p.name for p in foreign.iterdir()) == [
        "notes.txt"
    ]
    assert reiddata_main(["show", str(converted("market1501")), "--out", str(tmp_path / "p"), "--ids", "a"]) == 2
    assert not (tmp_path / "p").exists()
    # our own page is replaced
    assert reiddata_main(["show", str(converted("market1501")), "--out", str(tmp_path / "p"), "--quiet"]) == 0
    assert reiddata_main(["show", str(converted("market1501")), "--out", str(tmp_path / "p"), "--quiet"]) == 0


def test_pick_queries_worst_first_then_a_seeded_sample():
    ap = np.array([0.5, 0.1, 0.9, 0.1, 0.3, 0.7, 1.0, 0.2])
    picked = pick_queries(ap, worst=3, sample=2, seed=0)
    assert picked[:3] == [("worst", 1), ("worst", 3), ("worst", 7)]
    rest = picked[3:]
    assert [k for k, _ in rest] == ["random", "random"] and {p for _, p in rest} <= {0, 2, 4, 5, 6}
    assert pick_queries(ap, worst=3, sample=2, seed=0) == picked
    assert len(pick_queries(ap, worst=10, sample=5, seed=0)) == 8


TINY = {"p": 3, "k": 2, "stages": {"stage1": {"epochs": 1}, "stage2": {"epochs": 2, "lr": 3e-4}}}


def test_failure_report_in_the_browser(browser, converted, tmp_path):  # noqa: F811
    from reidmodels.cli import main as reidmodels_main
    from reidmodels.engine import train

    data = converted("market1501")
    train(cpu_train_config(data, tmp_path / "run", hparams=TINY, max_steps_per_epoch=2))
    params = tmp_path / "params.yaml"
    params.write_text("evaluate: {workers: 0, device: cpu, report_queries: 5, report_top_k: 6}\n")
    args = ["evaluate", "--params", str(params), "--data", str(data), "--checkpoint", str(tmp_path / "run")]
    assert reidmodels_main([*args, "--out", str(tmp_path / "eval"), "--report", str(tmp_path / "report")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    page = _open(browser, tmp_path / "report" / "index.html")
    images = _check_images(page)
    assert {"cmc.png", "embedding.png"} <= {i["src"] for i in images}
    queries = page.page.locator(".query")
    assert queries.count() == 10  # 5 worst + 5 random
    assert page.page.locator(".kind-worst").first.inner_text().startswith("worst #1")
    aps = [float(a) for a in re.findall(r"(?<!m)AP (\d\.\d+)", page.page.inner_text("#protocols"))]
    assert aps[:5] == sorted(aps[:5])  # worst first
    hits = page.page.locator(".hit")
    assert hits.count() == 60
    classes = set(page.page.eval_on_selector_all(".hit", "(hs) => hs.map((h) => h.className.split(' ')[1])"))
    assert classes <= {"correct", "wrong", "junk"} and "wrong" in classes
    page.page.select_option("#kind-select", "random")
    assert page.page.locator(".query").count() == 5 and page.page.locator(".kind-worst").count() == 0
    assert f"mAP {metrics['standard']['mAP']:.3f}" in page.page.inner_text("#protocols")
    page.page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
    assert page.errors == []
    page.close()
    # every hit's class follows the protocol's rule
    report = json.loads((tmp_path / "report" / "data.js").read_text().split(" = ", 1)[1].rstrip(";\n"))
    for q in report["protocols"][0]["queries"]:
        for h in q["hits"]:
            same = h["pid"] == q["pid"]
            expected = "junk" if same and h["camid"] == q["camid"] else "correct" if same else "wrong"
            assert h["class"] == expected
        assert [h["distance"] for h in q["hits"]] == sorted(h["distance"] for h in q["hits"])


def test_failure_report_of_tracklets_shows_their_frames(browser, converted, tmp_path):  # noqa: F811
    from reidmodels.engine import EvalConfig, evaluate, train

    data = converted("mars")
    hparams = {"p": 3, "k": 2, "clip_length": 2, "stages": {"train": {"epochs": 1}}}
    train(cpu_train_config(data, tmp_path / "run", method="clip-video", hparams=hparams, max_steps_per_epoch=2))
    config = EvalConfig(data=str(data), checkpoint=str(tmp_path / "run"), out=str(tmp_path / "eval"), workers=0,
                        device="cpu", report=str(tmp_path / "report"), report_queries=3, report_top_k=4)  # fmt: skip
    evaluate(config)
    report = json.loads((tmp_path / "report" / "data.js").read_text().split(" = ", 1)[1].rstrip(";\n"))
    assert report["meta"]["warnings"] == [] and len(report["protocols"]) == 2  # MARS: standard and torchreid
    page = _open(browser, tmp_path / "report" / "index.html")
    assert len(_check_images(page)) >= 2 + 6 * 5  # the figures, and 6 queries with 4 hits each, all decoded
    assert page.errors == []
    page.close()
