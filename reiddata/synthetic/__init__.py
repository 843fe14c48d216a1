"""``reiddata synth``: a small deterministic synthetic world in a source's real layout.

It is the embedded default data of the pipeline and the fixture of the tests: what
``convert`` reads from it is exactly what it would read from the real download.
"""

from __future__ import annotations

from pathlib import Path

from ..defaults import DEFAULT_IDENTITIES
from ..errors import ReidDataError
from ..output import atomic_output, is_ours_marker
from .layouts import LAYOUTS, TRACKLET_SOURCES, write_distractors
from .people import Person, make_people, render

__all__ = ["DEFAULT_IDENTITIES", "synth", "Person", "make_people", "render"]

MARKER = ".reiddata-synth"  # lets --overwrite replace a synthetic tree, and nothing else


def synth(
    source: str,
    out: Path,
    *,
    identities: int = DEFAULT_IDENTITIES,
    seed: int = 0,
    variant: str | None = None,
    overwrite: bool = False,
    distractors: int = 0,
) -> Path:
    """Write the synthetic tree of ``source`` under ``out``; the same arguments give the same bytes.

    ``distractors``: also write that many unlabeled crops into ``out/distractors/``
    (people who are not in the dataset and false detections; names carry no label), the
    stand-in for Market-1501's 500k distractor set."""
    if source not in LAYOUTS:
        raise ReidDataError(f"no synthetic layout for {source!r}: expected one of {', '.join(sorted(LAYOUTS))}")
    layout = LAYOUTS[source]
    if variant is not None and variant.lower() == "default":  # lets a pipeline name a variant for every source
        variant = None
    if variant is not None and variant.lower() not in layout.variants:
        allowed = ", ".join(layout.variants) or "none"
        raise ReidDataError(f"{source} has no variant {variant!r}: expected one of {allowed}")
    if distractors < 0:
        raise ReidDataError(f"--distractors must be 0 or more, got {distractors}")
    if distractors and source in TRACKLET_SOURCES:
        raise ReidDataError(f"--distractors is for image sources; {source} holds tracklets")
    if identities < layout.min_identities:
        raise ReidDataError(f"--identities must be at least {layout.min_identities} (train and test need people)")
    what = f"a synthetic tree written by reiddata synth (a folder with {MARKER})"
    with atomic_output(Path(out), overwrite=overwrite, is_ours=is_ours_marker(MARKER), what=what) as tmp:
        layout.write(tmp, identities, seed, variant)
        if distractors:
            write_distractors(tmp / "distractors", distractors, seed)
        (tmp / MARKER).write_text(f"reiddata synth {source} --identities {identities} --seed {seed}\n")
    return Path(out)
