"""The procedural world: scene specs, the caption grammar that describes them, sampling, and the held-out split.

A scene is one to three objects (shape, colour, size, motion) over a background, optionally with a camera pan.
Its caption is generated from a small regular grammar, so a tiny text encoder can learn it and `parse_caption`
can invert it::

    caption  := object ("and" object)* ["on" background] ["," "camera panning" direction]
    object   := ("a" | "an") ["small" | "big"] colour shape [motion]
    motion   := "moving" ("left" | "right" | "up" | "down") | "bouncing" | "orbiting" | "growing"
              | "shrinking" | "spinning"                      (no motion word: the object stands still)
    background := "a" colour "background"                     (plain)
              | "a" colour "to" colour "gradient"             (vertical, top to bottom)
              | "a sky over" colour "ground"
              | colour "and" colour "stripes"                 (diagonal)
              | "a" colour "and" colour "checkerboard"

e.g. "a red circle moving left and a big blue star orbiting on a sky over green ground".

Positions, speeds and phases are not in the caption: they are the nuisance variables a model must sample. Motions
are stated in screen space (what the viewer sees); a camera pan scrolls the patterned backgrounds only.

Held-out split: a colour×shape×motion triple is held out iff (colour index + shape index + motion index) % 6 == 0
(indices into COLOURS, SHAPES, MOTIONS), about 1/6 of the valid triples. Every colour×shape, colour×motion and
shape×motion pair still occurs in training, so held-out prompts test composition, not new words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np

from .colour import COLOURS, PALETTE, PALETTE_LAB, PALETTE_RGB, rgb_to_lab

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross", "ring")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
MOTIONS: tuple[str, ...] = DIRECTIONS + ("bouncing", "orbiting", "growing", "shrinking", "spinning")
STILL = "still"  # what a caption without a motion word means; never sampled
SIZES: dict[str, float] = {"small": 0.07, "medium": 0.10, "big": 0.14}  # object radius, fraction of the frame
BACKGROUNDS: dict[str, int] = {"plain": 1, "gradient": 2, "sky": 1, "stripes": 2, "checkerboard": 2}  # → colours
PANNABLE = ("stripes", "checkerboard")  # smooth backgrounds would not show a pan, so none is sampled for them
ROTATION_SYMMETRIC = ("circle", "ring")  # spinning them changes nothing on screen: not a valid triple

# The sky: a vertical gradient down to the horizon, then the ground colour, slightly darker towards the bottom.
SKY_TOP = (60, 120, 215)
SKY_HORIZON = (175, 210, 245)
HORIZON = 0.625
GROUND_SHADE = 0.2

MAX_CAPTION_TOKENS = 23  # the demo text encoder sees BOS + 23 tokens; sampled captions always fit
MIN_CONTRAST_LAB = 35.0  # an object colour is at least this ΔE from every background colour...
MIN_CONTRAST_RGB = 70.0  # ...and this far in RGB, which the analyser's foreground threshold works in

Split = Literal["train", "heldout", "any"]
Triple = tuple[str, str, str]


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    motion: str = STILL
    size: str = "medium"
    x: float = 0.5  # start centre (orbit centre for "orbiting"), fractions of the frame, y downwards
    y: float = 0.5
    speed: float = 1.0  # multiplies the motion's base speed
    phase: float = 0.0  # in [0, 1): orbit / growth / spin phase, bounce direction

    @property
    def triple(self) -> Triple:
        return (self.colour, self.shape, self.motion)


@dataclass(frozen=True)
class Background:
    kind: str = "plain"
    colours: tuple[str, ...] = ("black",)


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: Background = field(default_factory=Background)
    pan: str | None = None  # camera pan direction, one of DIRECTIONS


# --- captions -------------------------------------------------------------------------------------------------

def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


def _object_phrase(obj: Obj) -> str:
    words = ([] if obj.size == "medium" else [obj.size]) + [obj.colour, obj.shape]
    if obj.motion in DIRECTIONS:
        words += ["moving", obj.motion]
    elif obj.motion != STILL:
        words.append(obj.motion)
    return " ".join([_article(words[0])] + words)


def _background_phrase(bg: Background) -> str:
    c = bg.colours
    if bg.kind == "plain":
        return f"{_article(c[0])} {c[0]} background"
    if bg.kind == "gradient":
        return f"{_article(c[0])} {c[0]} to {c[1]} gradient"
    if bg.kind == "sky":
        return f"a sky over {c[0]} ground"
    if bg.kind == "stripes":
        return f"{c[0]} and {c[1]} stripes"
    return f"{_article(c[0])} {c[0]} and {c[1]} checkerboard"


def caption(scene: Scene) -> str:
    """The scene's caption in the world's grammar (see the module docstring)."""
    text = " and ".join(_object_phrase(o) for o in scene.objects) + " on " + _background_phrase(scene.background)
    if scene.pan is not None:
        text += f", camera panning {scene.pan}"
    return text


def caption_tokens(text: str) -> list[str]:
    """Words and commas, as the demo's word-level tokenizer splits them."""
    return re.findall(r"[a-z]+|,", text.lower())


VOCABULARY: tuple[str, ...] = tuple(sorted(set(COLOURS + SHAPES + MOTIONS) | {
    "a", "an", "small", "big", "and", "on", "to", "over", "moving", "background", "gradient", "sky", "ground",
    "stripes", "checkerboard", "camera", "panning", ","}))


class _Words:
    """A cursor over caption tokens that produces parse errors naming the word and its position."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = caption_tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, allowed: tuple[str, ...] | set[str], what: str) -> str:
        word = self.peek()
        if word not in allowed:
            found = f"'{word}' (word {self.i + 1})" if word is not None else "the end of the caption"
            raise ValueError(f"expected {what} but found {found} in caption {self.text!r}")
        self.i += 1
        return word

    def accept(self, word: str) -> bool:
        if self.peek() == word:
            self.i += 1
            return True
        return False


def _parse_object(w: _Words) -> tuple[str, str, str, str]:
    w.take(("a", "an"), "'a' or 'an'")
    size = w.take(("small", "big"), "a size") if w.peek() in ("small", "big") else "medium"
    colour = w.take(COLOURS, "a colour")
    shape = w.take(SHAPES, "a shape")
    if w.accept("moving"):
        motion = w.take(DIRECTIONS, "a direction after 'moving'")
    elif w.peek() in MOTIONS and w.peek() not in DIRECTIONS:
        motion = w.take(MOTIONS, "a motion")
    else:
        motion = STILL
    return shape, colour, motion, size


def _parse_background(w: _Words) -> Background:
    if not w.accept("a") and not w.accept("an"):
        first = w.take(COLOURS, "a colour or 'a'")
        w.take(("and",), "'and'")
        second = w.take(COLOURS, "a colour")
        w.take(("stripes",), "'stripes'")
        return Background("stripes", (first, second))
    if w.accept("sky"):
        w.take(("over",), "'over'")
        ground = w.take(COLOURS, "a colour")
        w.take(("ground",), "'ground'")
        return Background("sky", (ground,))
    first = w.take(COLOURS, "a colour or 'sky'")
    link = w.take(("background", "to", "and"), "'background', 'to' or 'and'")
    if link == "background":
        return Background("plain", (first,))
    second = w.take(COLOURS, "a colour")
    w.take(("gradient",) if link == "to" else ("checkerboard",), "'gradient'" if link == "to" else "'checkerboard'")
    return Background("gradient" if link == "to" else "checkerboard", (first, second))


def default_layout(n: int) -> list[tuple[float, float]]:
    """Where parsed (not sampled) objects start: spread out so one to three objects do not overlap."""
    return {1: [(0.5, 0.5)], 2: [(0.3, 0.35), (0.7, 0.65)], 3: [(0.25, 0.3), (0.75, 0.35), (0.5, 0.72)]}[n]


def parse_caption(text: str) -> Scene:
    """Invert `caption`: a Scene with the named objects, background and pan, laid out by `default_layout`.

    Case and extra spaces are ignored; a missing background means a plain black one. Words outside VOCABULARY
    raise a ValueError that names them; so does a caption that breaks the grammar (naming the word and position).
    """
    unknown = sorted(set(caption_tokens(text)) - set(VOCABULARY))
    leftover = re.sub(r"[a-z]+|,|\s", "", text.lower())
    if unknown or leftover:
        raise ValueError(f"unknown words in caption {text!r}: {unknown + list(leftover)}; "
                         f"the vocabulary is {' '.join(VOCABULARY)}")
    w = _Words(text)
    specs = [_parse_object(w)]
    while w.accept("and"):
        specs.append(_parse_object(w))
    if len(specs) > 3:
        raise ValueError(f"at most 3 objects per caption, got {len(specs)} in {text!r}")
    background = _parse_background(w) if w.accept("on") else Background()
    pan = None
    if w.accept(","):
        w.take(("camera",), "'camera'")
        w.take(("panning",), "'panning'")
        pan = w.take(DIRECTIONS, "a pan direction")
    if w.peek() is not None:
        w.take((), "the end of the caption")
    objects = tuple(Obj(shape, colour, motion, size, x, y)
                    for (shape, colour, motion, size), (x, y) in zip(specs, default_layout(len(specs))))
    return Scene(objects, background, pan)


# --- held-out split -------------------------------------------------------------------------------------------

def valid_triple(colour: str, shape: str, motion: str) -> bool:
    return not (motion == "spinning" and shape in ROTATION_SYMMETRIC)


def _is_heldout_index(ci: int, si: int, mi: int) -> bool:
    return (ci + si + mi) % 6 == 0


ALL_TRIPLES: tuple[Triple, ...] = tuple((c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS
                                        if valid_triple(c, s, m))
HELDOUT_TRIPLES: frozenset[Triple] = frozenset(
    t for t in ALL_TRIPLES if _is_heldout_index(COLOURS.index(t[0]), SHAPES.index(t[1]), MOTIONS.index(t[2])))
TRAIN_TRIPLES: tuple[Triple, ...] = tuple(t for t in ALL_TRIPLES if t not in HELDOUT_TRIPLES)


def is_heldout(colour: str, shape: str, motion: str) -> bool:
    return (colour, shape, motion) in HELDOUT_TRIPLES


# --- sampling -------------------------------------------------------------------------------------------------

def _sky_colours() -> np.ndarray:
    ramp = np.linspace(0.0, 1.0, 9, dtype=np.float32)[:, None]
    top = np.array(SKY_TOP, np.float32)
    return top + ramp * (np.array(SKY_HORIZON, np.float32) - top)


def background_colours(bg: Background) -> np.ndarray:
    """Every colour the background shows (gradients sampled along their length), sRGB float (N, 3)."""
    rgb = np.array([PALETTE[c] for c in bg.colours], dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, 9, dtype=np.float32)[:, None]
    if bg.kind == "gradient":
        return rgb[0] + ramp * (rgb[1] - rgb[0])
    if bg.kind == "sky":
        return np.concatenate([_sky_colours(), rgb[0] * (1 - GROUND_SHADE * ramp)])
    return rgb


def _colours_far_from(shown: np.ndarray, min_lab: float, min_rgb: float) -> list[str]:
    d_lab = np.linalg.norm(PALETTE_LAB[:, None] - rgb_to_lab(shown)[None], axis=-1).min(1)
    d_rgb = np.linalg.norm(PALETTE_RGB[:, None] - shown[None], axis=-1).min(1)
    return [c for c, a, b in zip(COLOURS, d_lab, d_rgb) if a >= min_lab and b >= min_rgb]


@lru_cache(maxsize=None)  # a few hundred backgrounds exist; sampling asks for each again and again
def contrasting_colours(bg: Background) -> tuple[str, ...]:
    """The colours an object may have on this background: far from all of its colours (Lab and RGB)."""
    return tuple(_colours_far_from(background_colours(bg), MIN_CONTRAST_LAB, MIN_CONTRAST_RGB))


def _pick(rng: np.random.Generator, items: list | tuple):
    return items[int(rng.integers(len(items)))]


GROUND_COLOURS = tuple(_colours_far_from(_sky_colours(), 25.0, 60.0))  # differ from the sky: the horizon shows


def _sample_background(rng: np.random.Generator, kinds: tuple[str, ...] = tuple(BACKGROUNDS)) -> Background:
    kind = _pick(rng, kinds)
    if kind == "sky":
        return Background("sky", (_pick(rng, GROUND_COLOURS),))
    order = rng.permutation(len(COLOURS))[:BACKGROUNDS[kind]]
    return Background(kind, tuple(COLOURS[i] for i in order))


def _sample_object(rng: np.random.Generator, triple: Triple, sizes: tuple[str, ...],
                   others: tuple[Obj, ...] = ()) -> Obj:
    colour, shape, motion = triple
    for _ in range(20):  # start apart from the other objects, so two that stay put do not hide each other
        # Movers along one axis may start anywhere on it (they wrap around); others start well inside the frame.
        along, across = float(rng.random()), float(rng.uniform(0.2, 0.8))
        if motion in ("left", "right"):
            x, y = along, across
        elif motion in ("up", "down"):
            x, y = across, along
        else:
            x, y = (float(v) for v in rng.uniform(0.25, 0.75, size=2))
        if all(np.hypot(x - o.x, y - o.y) > 0.3 for o in others):
            break
    return Obj(shape, colour, motion, _pick(rng, sizes), x, y, float(rng.uniform(0.8, 1.25)), float(rng.random()))


def sample_scene(rng: np.random.Generator, *, split: Split = "train", max_objects: int = 3) -> Scene:
    """A random scene. split="train" never yields a held-out triple (for any object); "heldout" makes the first
    object a held-out triple (the others are training triples); "any" draws from all valid triples.
    Object colours are distinct and contrast with the background; the caption fits MAX_CAPTION_TOKENS."""
    if split not in ("train", "heldout", "any"):
        raise ValueError(f"split must be 'train', 'heldout' or 'any', got {split!r}")
    first_pool = {"train": TRAIN_TRIPLES, "heldout": tuple(sorted(HELDOUT_TRIPLES)), "any": ALL_TRIPLES}[split]
    other_pool = ALL_TRIPLES if split == "any" else TRAIN_TRIPLES
    n = int(rng.integers(1, max_objects + 1))
    while True:  # rejection: a long caption (3 objects, sizes, a pan...) is re-drawn whole; terminates fast
        background = _sample_background(rng)
        pan = _pick(rng, DIRECTIONS) if background.kind in PANNABLE and rng.random() < 0.5 else None
        allowed = set(contrasting_colours(background))
        objects: list[Obj] = []
        for i in range(n):
            pool = [t for t in (first_pool if i == 0 else other_pool) if t[0] in allowed]
            objects.append(_sample_object(rng, _pick(rng, pool), tuple(SIZES), tuple(objects)))
            allowed.discard(objects[-1].colour)
        scene = Scene(tuple(objects), background, pan)
        if len(caption_tokens(caption(scene))) <= MAX_CAPTION_TOKENS:
            return scene


BENCHMARK_MOTIONS = ("left", "right", "up", "down", "growing", "left", "right", "up", "down", "shrinking")
BENCHMARK_BACKGROUNDS = ("plain", "gradient", "sky")


def heldout_scenes(n: int = 50, seed: int = 0) -> list[Scene]:
    """Single-object scenes whose triple is held out: the prompt-adherence benchmark. Motions cycle through
    BENCHMARK_MOTIONS (80% left/right/up/down, 20% growing/shrinking), triples are distinct while they last,
    backgrounds are the smooth kinds, sizes medium or big (what the analyser can judge reliably)."""
    rng = np.random.default_rng(seed)
    queues = {m: [t for t in sorted(HELDOUT_TRIPLES) if t[2] == m] for m in set(BENCHMARK_MOTIONS)}
    for m in sorted(queues):
        queues[m] = [queues[m][i] for i in rng.permutation(len(queues[m]))]
    used = {m: 0 for m in queues}
    scenes = []
    for i in range(n):
        motion = BENCHMARK_MOTIONS[i % len(BENCHMARK_MOTIONS)]
        colour, shape, _ = queues[motion][used[motion] % len(queues[motion])]
        used[motion] += 1
        while True:  # a smooth background the object's colour stands out on
            background = _sample_background(rng, BENCHMARK_BACKGROUNDS)
            if colour in contrasting_colours(background):
                break
        obj = _sample_object(rng, (colour, shape, motion), ("medium", "big"))
        scenes.append(Scene((obj,), background))
    return scenes


def heldout_prompts(n: int = 50, seed: int = 0) -> list[str]:
    """The captions of `heldout_scenes(n, seed)`: fixed for a given (n, seed), never seen in training."""
    return [caption(s) for s in heldout_scenes(n, seed)]
