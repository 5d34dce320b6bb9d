"""The procedural video world the demo model is trained on: scenes from a caption grammar (`world`), an
anti-aliased numpy renderer (`render`), and an automatic analyser that judges generated clips (`analyser`).
numpy only; nothing here imports torch."""

from .analyser import analyse, collapse_check, judge, reference_stats
from .render import benchmark_render, render, render_background, sample_clip, stream_scene, trajectory
from .world import (COLOURS, HELDOUT_TRIPLES, MOTIONS, SHAPES, TRAIN_TRIPLES, VOCABULARY, Background, Obj, Scene,
                    caption, heldout_prompts, heldout_scenes, is_heldout, parse_caption, sample_scene)

__all__ = ["COLOURS", "HELDOUT_TRIPLES", "MOTIONS", "SHAPES", "TRAIN_TRIPLES", "VOCABULARY", "Background", "Obj",
           "Scene", "analyse", "benchmark_render", "caption", "collapse_check", "heldout_prompts", "heldout_scenes",
           "is_heldout", "judge", "parse_caption", "reference_stats", "render", "render_background", "sample_clip",
           "sample_scene", "stream_scene", "trajectory"]
