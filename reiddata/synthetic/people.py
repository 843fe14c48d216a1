"""A deterministic synthetic world of people, rendered as person crops.

Every person has visible attributes (gender, age, hair, hat, sleeve and lower-body
length, dress or pants, upper and lower colours, shoes, boots, one of backpack / bag /
handbag) and per-identity details (build, height, skin and hair tone, a mark on the
top, hat and bag colours), so identities differ in ways a model can learn. Views
differ the way real ones do: ``ground`` is a frontal full-body crop, ``aerial`` is
seen from above (foreshortened, head and shoulders dominant), smaller and blurrier,
``wearable`` is a close, tilted, partly cut-off crop.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["COLOURS", "Person", "make_people", "render", "render_clutter", "jpeg_bytes"]

COLOURS = {
    "black": (25, 25, 28),
    "white": (232, 232, 228),
    "red": (200, 30, 35),
    "purple": (120, 50, 150),
    "yellow": (230, 205, 40),
    "gray": (128, 128, 128),
    "blue": (35, 70, 190),
    "green": (40, 150, 60),
    "pink": (235, 140, 175),
    "brown": (120, 75, 40),
}
SKIN = ((241, 200, 170), (224, 172, 135), (190, 135, 95), (140, 95, 65), (95, 65, 45))
HAIR = ((20, 15, 10), (70, 45, 25), (150, 110, 60), (200, 170, 110))
VIEWS = ("ground", "aerial", "wearable")


@dataclass(frozen=True)
class Person:
    """One synthetic identity: what an annotator would label, and what makes it unique."""

    index: int
    attrs: dict[str, str]  # gender age hair hat sleeve lower clothes upcolor downcolor shoes boots carrying
    up_rgb: tuple[tuple[int, int, int], ...]  # one colour, two when the top is multi-coloured
    down_rgb: tuple[tuple[int, int, int], ...]
    skin: tuple[int, int, int]
    hair_rgb: tuple[int, int, int]
    accent: tuple[int, int, int]  # hat and bag colour
    mark: str  # per-identity detail on the top: none, hstripe, vstripe, logo
    mark_rgb: tuple[int, int, int]
    build: float  # width factor
    stature: float  # height factor


def _pick(rng: np.random.Generator, options: Sequence[str], p: Sequence[float] | None = None) -> str:
    return str(options[int(rng.choice(len(options), p=p))])


def make_person(index: int, seed: int, *, up_colours: Sequence[str], down_colours: Sequence[str]) -> Person:
    """The person ``index`` of the world ``seed``; the same arguments give the same person."""
    rng = np.random.default_rng([seed, 7919, index])
    gender = _pick(rng, ("male", "female"))
    age = _pick(rng, ("young", "teenager", "adult", "old"), (0.1, 0.2, 0.6, 0.1))
    female = gender == "female"
    attrs = {
        "gender": gender,
        "age": age,
        "hair": _pick(rng, ("short", "long"), (0.35, 0.65) if female else (0.9, 0.1)),
        "hat": _pick(rng, ("no", "yes"), (0.85, 0.15)),
        "sleeve": _pick(rng, ("long", "short"), (0.4, 0.6)),
        "lower": _pick(rng, ("long", "short"), (0.65, 0.35)),
        "clothes": _pick(rng, ("dress", "pants"), (0.35, 0.65) if female else (0.02, 0.98)),
        "upcolor": _pick(rng, up_colours),
        "downcolor": _pick(rng, down_colours),
        "shoes": _pick(rng, ("dark", "light"), (0.75, 0.25)),
        "boots": _pick(rng, ("no", "yes"), (0.8, 0.2)),
        # Real fact (APR): backpack, bag and handbag never co-occur.
        "carrying": _pick(rng, ("none", "backpack", "bag", "handbag"), (0.4, 0.3, 0.2, 0.1)),
    }
    up_rgb = [COLOURS[attrs["upcolor"]]]
    down_rgb = [COLOURS[attrs["downcolor"]]]
    if rng.random() < 0.06:  # a two-coloured lower garment: annotators mark several colours
        down_rgb.append(COLOURS[_pick(rng, [c for c in down_colours if c != attrs["downcolor"]])])
    hair_rgb = HAIR[int(rng.integers(len(HAIR)))] if age != "old" else (185, 185, 180)
    return Person(
        index=index,
        attrs=attrs,
        up_rgb=tuple(up_rgb),
        down_rgb=tuple(down_rgb),
        skin=SKIN[int(rng.integers(len(SKIN)))],
        hair_rgb=hair_rgb,
        accent=tuple(int(v) for v in rng.integers(20, 235, size=3)),  # type: ignore[arg-type]
        mark=_pick(rng, ("none", "hstripe", "vstripe", "logo")),
        mark_rgb=tuple(int(v) for v in rng.integers(0, 255, size=3)),  # type: ignore[arg-type]
        build=float(rng.uniform(0.8, 1.2)),
        stature=float(rng.uniform(0.88, 1.0)) * (0.85 if age in ("young", "teenager") else 1.0),
    )


def make_people(count: int, seed: int, *, up_colours: Sequence[str], down_colours: Sequence[str]) -> list[Person]:
    return [make_person(i, seed, up_colours=up_colours, down_colours=down_colours) for i in range(count)]


def _background(rng: np.random.Generator, w: int, h: int, tint: tuple[int, int, int]) -> Image.Image:
    base = np.asarray(tint, dtype=np.float32)
    ramp = np.linspace(-25, 25, h, dtype=np.float32)[:, None, None]
    noise = rng.normal(0, 10, size=(h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    noise = np.kron(noise, np.ones((4, 4, 1), dtype=np.float32))[:h, :w]
    return Image.fromarray(np.clip(base + ramp + noise, 0, 255).astype(np.uint8))


# long, as a drawing is: one statement per stroke, in painting order
def _draw_figure(draw: ImageDraw.ImageDraw, p: Person, cx: float, top: float, h: float, flip: bool) -> None:
    """Draw a frontal full-body figure of height ``h`` from ``top``, centred on ``cx``."""
    a = p.attrs
    w = 0.42 * h * 0.5 * p.build  # torso width
    side = -1 if flip else 1

    def rect(x0: float, y0: float, x1: float, y1: float, fill: tuple[int, int, int]) -> None:
        draw.rectangle([min(x0, x1), y0, max(x0, x1), y1], fill=fill)

    y = lambda f: top + f * h  # noqa: E731 - fractions of the figure's height
    head_r = 0.065 * h
    if a["carrying"] == "backpack":  # behind the body, sticking out on one side
        rect(cx + side * w * 0.2, y(0.17), cx + side * (w * 0.5 + 0.06 * h), y(0.42), p.accent)
    if a["hair"] == "long":
        rect(cx - head_r * 1.05, y(0.07), cx + head_r * 1.05, y(0.25), p.hair_rgb)
    # arms
    arm_w = 0.09 * h * 0.5
    for s in (-1, 1):
        x0, x1 = cx + s * w / 2, cx + s * (w / 2 + arm_w)
        rect(x0, y(0.17), x1, y(0.50), p.skin)
        sleeve_end = 0.50 if a["sleeve"] == "long" else 0.28
        rect(x0, y(0.17), x1, y(sleeve_end), p.up_rgb[-1 if s > 0 else 0])
    # torso
    rect(cx - w / 2, y(0.16), cx + w / 2, y(0.50), p.up_rgb[0])
    if p.mark == "hstripe":
        rect(cx - w / 2, y(0.29), cx + w / 2, y(0.34), p.mark_rgb)
    elif p.mark == "vstripe":
        rect(cx - w * 0.08, y(0.16), cx + w * 0.08, y(0.50), p.mark_rgb)
    elif p.mark == "logo":
        rect(cx - w * 0.15, y(0.22), cx + w * 0.15, y(0.30), p.mark_rgb)
    # lower body: legs (skin), then the garment over them
    leg_w = w * 0.42
    for s in (-1, 1):
        rect(cx + s * w * 0.04, y(0.50), cx + s * (w * 0.04 + leg_w), y(0.93), p.skin)
    if a["clothes"] == "dress":
        draw.polygon(
            [(cx - w / 2, y(0.48)), (cx + w / 2, y(0.48)), (cx + w * 0.65, y(0.78)), (cx - w * 0.65, y(0.78))],
            fill=p.down_rgb[0],
        )
    else:
        end = 0.93 if a["lower"] == "long" else 0.70
        rect(cx - w / 2, y(0.49), cx + w / 2, y(0.56), p.down_rgb[0])
        for s, colour in zip((-1, 1), (p.down_rgb[0], p.down_rgb[-1])):
            rect(cx + s * w * 0.04, y(0.50), cx + s * (w * 0.04 + leg_w), y(end), colour)
    shoe = COLOURS["black"] if a["shoes"] == "dark" else (225, 222, 210)
    shoe_top = 0.82 if a["boots"] == "yes" else 0.92
    for s in (-1, 1):
        rect(cx + s * w * 0.02, y(shoe_top), cx + s * (w * 0.06 + leg_w), y(0.975), shoe)
    # head, hair, hat
    draw.ellipse([cx - head_r, y(0.01), cx + head_r, y(0.01) + 2 * head_r], fill=p.skin)
    draw.chord([cx - head_r, y(0.01), cx + head_r, y(0.01) + 2 * head_r], 180, 360, fill=p.hair_rgb)
    if a["hat"] == "yes":
        rect(cx - head_r * 1.1, y(0.0), cx + head_r * 1.1, y(0.045), p.accent)
        rect(cx - head_r * 1.5, y(0.04), cx + head_r * 1.5, y(0.055), p.accent)
    if a["carrying"] == "bag":  # shoulder bag: strap across the torso, bag at the hip
        draw.line(
            [(cx - side * w / 2, y(0.17)), (cx + side * w / 2, y(0.47))], fill=p.accent, width=max(1, int(h / 60))
        )
        rect(cx + side * w * 0.35, y(0.44), cx + side * (w * 0.35 + 0.08 * h), y(0.56), p.accent)
    elif a["carrying"] == "handbag":
        x = cx - side * (w / 2 + arm_w)
        rect(x, y(0.50), x - side * 0.07 * h, y(0.60), p.accent)
    elif a["carrying"] == "backpack":  # straps over the shoulders
        for s in (-1, 1):
            rect(cx + s * w * 0.3, y(0.16), cx + s * w * 0.38, y(0.38), p.accent)


def _from_above(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Warp a frontal crop as a camera looking down sees it.

    Rows near the top (head, shoulders) are stretched and the legs squeezed, and the
    far end (the feet) narrows; a soft shadow falls beside the body.
    """
    pixels = np.asarray(image)
    h, w = pixels.shape[:2]
    t = np.linspace(0.0, 1.0, h)
    rows = np.clip((t ** rng.uniform(1.5, 1.9)) * (h - 1), 0, h - 1).astype(int)
    x = np.linspace(-0.5, 0.5, w)[None, :]
    cols = np.clip((0.5 + x * (1.0 + 0.6 * t[:, None])) * (w - 1), 0, w - 1).astype(int)
    warped = pixels[rows[:, None], cols].astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    shadow = np.exp(-(((xx - 0.7 * w) / (0.25 * w)) ** 2 + ((yy - 0.85 * h) / (0.12 * h)) ** 2))
    warped *= 1.0 - 0.45 * shadow[..., None] * (warped.mean(-1, keepdims=True) > 0)
    return Image.fromarray(warped.clip(0, 255).astype(np.uint8))


def render(
    person: Person,
    *,
    view: str,
    size: tuple[int, int],
    rng: np.random.Generator,
    tint: tuple[int, int, int] = (120, 125, 120),
) -> Image.Image:
    """A crop of ``person`` seen from ``view``, ``size`` = (width, height)."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}: expected one of {VIEWS}")
    width, height = size
    sw, sh = width * 2, height * 2  # draw at 2x, downsample for anti-aliasing
    image = _background(rng, sw, sh, tint)
    draw = ImageDraw.Draw(image)
    scale = rng.uniform(0.9, 1.0) * person.stature
    cx = sw / 2 + rng.uniform(-0.06, 0.06) * sw
    if view == "wearable":
        fig_h = sh * rng.uniform(1.15, 1.35)  # close: the figure runs out of the frame
        top = rng.uniform(-0.02, 0.05) * sh
    else:
        fig_h = sh * 0.94 * scale
        top = (sh - fig_h) * rng.uniform(0.3, 0.7)
    _draw_figure(draw, person, cx, top, fig_h, flip=bool(rng.random() < 0.5))
    if view == "aerial":
        image = _from_above(image, rng)
    elif view == "wearable":
        image = image.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BILINEAR, fillcolor=tint)
    image = image.resize((width, height), Image.Resampling.BOX)
    if view == "aerial":
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.8)))
    gain = rng.uniform(0.85, 1.15)
    pixels = np.asarray(image, dtype=np.float32) * gain + rng.normal(0, 4, size=(height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def render_clutter(*, size: tuple[int, int], rng: np.random.Generator, tint: tuple[int, int, int]) -> Image.Image:
    """A false detection: background and stray blobs, no person (Market's ``0000``)."""
    width, height = size
    image = _background(rng, width, height, tint)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        x1, y1 = x0 + rng.uniform(4, width / 2), y0 + rng.uniform(4, height / 3)
        draw.rectangle([x0, y0, x1, y1], fill=tuple(int(v) for v in rng.integers(0, 255, size=3)))
    return image


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
