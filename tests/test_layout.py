"""The layout of the code: imports run one way, names say what they are, the package entry is lazy."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reiddata", "reidmodels")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports anywhere in its file (inside functions too),
    a package's own ``__init__`` facade left out when a submodule imports it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name and not name.startswith(candidate + "."):
                found.add(candidate)
    return found


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_imports_run_one_way_with_no_circle():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _circles(graph) == []
    assert not any(
        m.startswith("reidmodels") for m in set().union(*(graph[n] for n in graph if n.startswith("reiddata")))
    )
    # the shard format is the floor of the data side: it stands on errors and the attribute schema only
    assert graph["reiddata.shard_format"] <= {"reiddata.errors", "reiddata.attributes"}
    for reader in ("reiddata.manifest", "reiddata.reader", "reiddata.stream", "reiddata.verify"):
        assert not graph[reader] & {"reiddata.writer", "reiddata.jobs", "reiddata.conversion"}, reader


def test_no_module_shares_a_name_with_what_its_package_exports():
    import reiddata
    import reidmodels

    for package in (reiddata, reidmodels):
        submodules = {p.stem for p in Path(package.__file__).parent.iterdir() if p.suffix == ".py" or p.is_dir()}
        assert not set(package.__all__) & submodules, package.__name__


def test_only_sources_are_registered_in_sources():
    from reiddata.sources import SOURCES

    folder = ROOT / "reiddata" / "sources"
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "base"}
    helpers = {m for m in modules if m.startswith("_")}
    assert helpers == {"_agreid_common", "_mars_format"}
    assert len(modules - helpers) == len(SOURCES) == 8


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    from reiddata import convert, synth

    root = tmp_path_factory.mktemp("layout")
    synth("market1501", root / "src", identities=6, seed=0)
    convert("market1501", root / "src", root / "shards")
    return root / "shards"


def test_reiddata_stats_loads_neither_pillow_nor_scipy(market):
    code = (
        "import sys; from reiddata.cli import main; rc = main(['stats', sys.argv[1]]);"
        "import json; print(json.dumps([rc, sorted(m for m in ('PIL', 'scipy', 'torch') if m in sys.modules)]))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(market)], capture_output=True, text=True, check=True)
    rc, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert rc == 0 and loaded == []
