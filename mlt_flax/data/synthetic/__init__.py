"""Synthetic facial Action Unit videos in the Aff-Wild2 (ABAW3 AU track) on-disk layout.

The project's embedded default dataset: procedurally drawn cartoon faces whose 12 Aff-Wild2 AUs
are local, anatomically placed changes (brows, lids, cheeks, lips, jaw), written exactly as the
real challenge data so the Aff-Wild2 TFDS builder reads it unchanged (``layout``; see
docs/datasets.md, "## Synthetic AU face videos").

How a video is made, one module a step (every number lives in ``config.SyntheticConfig``):

* ``identity``: ``sample_identity`` draws one person and scene, plus neutral-face quirks that
  mimic AUs across identities, so only *change* on a face is a reliable cue;
  ``sample_camera`` the capture settings.
* ``script``: ``simulate_script`` draws the per-frame timeline: AUs from expression events
  with onset/apex/offset envelopes, labels ``intensity >= label_threshold``, smooth pose,
  gaze, blinks and lighting, face-detection dropouts and annotation gaps (-1).
* ``render``: ``render_face`` (pure) draws the canonical face for given AU intensities;
  ``render_frame`` poses it over the scene with lighting, blur and sensor noise.
* ``writer``: ``generate`` plans the videos, writes frames as JPEG and labels as challenge
  files (in worker processes if asked) and records ``generator.json``.
* ``preview``: ``contact_sheet``, a captioned grid of random frames.

Everything is drawn from ``np.random.default_rng((seed, split, video, person))``, so the same
seed gives byte-identical label files and identical images.

Usage:  python -m mlt_flax.data.synthetic --out_dir=data/synthetic --seed=0
"""

from mlt_flax.data.affwild2_format import format_labels
from mlt_flax.data.synthetic.config import (AuEffects, Color, EventModel, ExpressionTemplate,
                                            FaceStyle, Nuisance, Range, SyntheticConfig)
from mlt_flax.data.synthetic.identity import Camera, Identity, sample_camera, sample_identity
from mlt_flax.data.synthetic.layout import (AU_ORDER, FIRST_FRAME, FRAME_NAME, IMAGES_DIR,
                                            LABELS_DIR, NOT_ANNOTATED, PAIR_SUFFIXES,
                                            PARAMS_FILENAME, SPLIT_DIRS)
from mlt_flax.data.synthetic.preview import contact_sheet
from mlt_flax.data.synthetic.render import render_background, render_face, render_frame
from mlt_flax.data.synthetic.script import Script, simulate_script
from mlt_flax.data.synthetic.writer import (GENERATOR_VERSION, VideoSpec, encode_jpeg,
                                            generate, make_video, plan_videos, write_video)

__all__ = [
    # Layout.
    "AU_ORDER", "IMAGES_DIR", "LABELS_DIR", "SPLIT_DIRS", "FRAME_NAME", "FIRST_FRAME",
    "NOT_ANNOTATED", "PAIR_SUFFIXES", "PARAMS_FILENAME",
    # Configuration.
    "Range", "Color", "FaceStyle", "AuEffects", "ExpressionTemplate", "EventModel", "Nuisance",
    "SyntheticConfig",
    # A video: person, camera, timeline, pixels.
    "Identity", "Camera", "sample_identity", "sample_camera", "Script", "simulate_script",
    "render_face", "render_frame", "render_background",
    # Writing and viewing a dataset.
    "GENERATOR_VERSION", "VideoSpec", "plan_videos", "make_video", "format_labels",
    "encode_jpeg", "write_video", "generate", "contact_sheet",
]
