"""Class names in any language: overlays and Visualizer pictures draw the label's own letters, never ``?``."""
from __future__ import annotations

import logging
import warnings

import cv2
import numpy as np
import pytest

from maskseg_d2.predict.detections import Detections, mask_boxes
from maskseg_d2.visualization import fonts
from maskseg_d2.visualization.fonts import UnicodeVisualizer, font_families, missing_characters, text_mask
from maskseg_d2.visualization.overlay import draw_detections

from detectron2.data import Metadata  # isort: skip

# French, Vietnamese (stacked diacritics), German; "?" put where each non-ASCII letter is
LABELS = [("Voiture de société", "Voiture de soci?t?"), ("Xe đạp điện", "Xe ??p ?i?n"),
          ("Straßenschild", "Stra?enschild")]


def _overlay(name: str) -> np.ndarray:
    img = np.full((400, 700, 3), 90, np.uint8)
    masks = np.zeros((1, 400, 700), bool)
    masks[0, 150:350, 100:600] = True
    dets = Detections(mask_boxes(masks), np.array([0.9], np.float32), np.array([0]), masks)
    return draw_detections(img, dets, [name], show_scores=False)


@pytest.mark.parametrize("unicode_name, ascii_name", LABELS)
def test_overlay_draws_the_letters_not_question_marks(unicode_name, ascii_name):
    assert missing_characters(unicode_name) == ""  # DejaVu Sans (shipped with matplotlib) has every letter
    ours, fallback = _overlay(unicode_name), _overlay(ascii_name)
    differ = np.abs(ours.astype(int) - fallback.astype(int)).max(axis=2) > 40
    assert differ.sum() > 10  # the accented letters are drawn, not the "?" of OpenCV's ASCII-only fonts
    # the "?" glyphs as the fallback overlay draws them (their pixels where the two differ, with a margin) ...
    ys, xs = np.nonzero(differ)
    first = xs <= xs.min() + 12  # the first differing letter
    y0, y1, x0, x1 = ys[first].min() - 2, ys[first].max() + 3, xs[first].min() - 2, xs[first].max() + 3
    template = cv2.cvtColor(fallback[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    gray = [cv2.cvtColor(im, cv2.COLOR_BGR2GRAY) for im in (fallback, ours)]
    scores = [float(cv2.matchTemplate(g, template, cv2.TM_CCOEFF_NORMED).max()) for g in gray]
    # ... are found in the fallback overlay (the check can fail) and nowhere in ours
    assert scores[0] > 0.99 and scores[1] < 0.8, scores


def test_text_mask_glyphs_differ_from_question_mark():
    question = text_mask("?", 28)
    for char in "éđạßô":
        glyph = text_mask(char, 28)
        assert glyph.max() == 255 and (glyph.shape != question.shape or not np.array_equal(glyph, question)), char


def test_missing_cjk_font_is_one_warning_naming_what_to_install(monkeypatch, caplog):
    """Without a CJK font (none here: DejaVu Sans alone), Chinese letters are named once with the install hint."""
    dejavu_only = (fonts._fonts()[0],)
    monkeypatch.setattr(fonts, "_fonts", lambda: dejavu_only)
    monkeypatch.setattr(fonts, "_WARNED", set())
    missing_characters.cache_clear()
    with caplog.at_level(logging.WARNING, logger=fonts.__name__):
        assert missing_characters("汽车 87%") == "汽车"
        assert missing_characters("汽车 88%") == "汽车"
    missing_characters.cache_clear()
    assert [r.getMessage() for r in caplog.records if "fonts-noto-cjk" in r.getMessage()] == [
        f"No font draws '汽车' of the label '汽车 87%' (drawn as boxes): {fonts.CJK_HINT}"]


def test_visualizer_labels_use_the_font_list():
    """Detectron2's Visualizer asks for "sans-serif" (one font); ours gives matplotlib the list to fall back on."""
    meta = Metadata(thing_classes=["Xe đạp"])
    record = {"annotations": [{"bbox": [20, 20, 120, 90], "bbox_mode": 0, "category_id": 0,
                               "segmentation": [[20, 20, 120, 20, 120, 90, 20, 90]]}]}
    image = np.full((120, 160, 3), 90, np.uint8)
    drawn = {}
    for name, label in (("ours", "Xe đạp"), ("ascii", "Xe ??p")):
        meta = Metadata(thing_classes=[label])
        vis = UnicodeVisualizer(image, meta)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
            drawn[name] = vis.draw_dataset_dict(record).get_image()
        assert vis.output.ax.texts[-1].get_fontfamily() == font_families()
        assert font_families()[0] == "DejaVu Sans"
    assert np.abs(drawn["ours"].astype(int) - drawn["ascii"].astype(int)).max() > 40
