"""Album coherence, measured rather than judged by eye: does an album keep its hero and its theme?

On the emoji album fixture's vocabulary (``evaluation.fixtures.albums``): a summary names a theme
and a hero ("a beach album starring a dog"); then

* ``summary_names_theme_and_hero``: share of summaries that name one theme and one hero;
* ``caption_hero_consistency``: share of an album's captions that name its summary's hero;
* ``caption_theme_agreement``: share of the other objects its captions name that belong to the
  summary's theme;
* with photos and a public SceneNet trained on album-style renders: ``photo_hero_consistency``
  (photos in which the network finds the summary's hero), ``photo_same_hero`` (share of photos
  holding the album's most frequent hero, whatever the summary says: the same hero across the
  album) and ``photo_theme_agreement`` (found non-hero objects that belong to the theme).

Each is averaged over albums (an album counts once, whatever its length).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..fixtures.albums import HEROES, THEMES
from ..metrics.base import MetricRecord
from ..scene_net import SceneFeatures, objects_in_caption


def _named(summary: str, names) -> str | None:
    found = objects_in_caption(summary, tuple(names))
    return found[0] if len(found) == 1 else None


def _mean(values: list[float], name: str, n: int, reason: str) -> MetricRecord:
    if not values:
        return MetricRecord(name, None, "higher", reason=reason)
    return MetricRecord(name, float(np.mean(values)), "higher", n_synthetic=n)


def album_coherence(albums: list[dict], *, features: SceneFeatures | None = None) -> list[MetricRecord]:
    """``albums``: dicts with ``summary``, ``captions`` and optionally ``images`` (one per caption)."""
    vocabulary = tuple(sorted({o for t in THEMES.values() for o in t["objects"]} | set(HEROES)))
    parsed = [(_named(a["summary"], THEMES), _named(a["summary"], HEROES)) for a in albums]
    out = [MetricRecord("summary_names_theme_and_hero", float(np.mean([t is not None and h is not None
                                                                     for t, h in parsed])) if albums else None,
                        "higher", n_synthetic=len(albums), reason=None if albums else "no albums")]
    hero_c, theme_c = [], []
    for a, (theme, hero) in zip(albums, parsed, strict=True):
        named = [objects_in_caption(c, vocabulary) for c in a["captions"]]
        if hero is not None and named:
            hero_c.append(np.mean([hero in n for n in named]))
        others = [o for n in named for o in n if o not in HEROES]
        if theme is not None and others:
            theme_c.append(np.mean([o in THEMES[theme]["objects"] for o in others]))
    why = "no summary names a hero / theme with objects in its captions"
    out += [_mean(hero_c, "caption_hero_consistency", len(albums), why),
            _mean(theme_c, "caption_theme_agreement", len(albums), why)]
    if features is None or not all("images" in a for a in albums):
        return out
    index = {o: i for i, o in enumerate(features.spec.objects)}
    hero_p, same_p, theme_p = [], [], []
    for a, (theme, hero) in zip(albums, parsed, strict=True):
        if not a["images"]:
            continue
        found = features.object_probabilities(a["images"]) > 0.5
        heroes_found = [[h for h in HEROES if h in index and found[i, index[h]]] for i in range(len(found))]
        if hero is not None and hero in index:
            hero_p.append(float(found[:, index[hero]].mean()))
        counts = Counter(h for hs in heroes_found for h in hs)
        if counts:
            top = counts.most_common(1)[0][0]
            same_p.append(float(np.mean([top in hs for hs in heroes_found])))
        others = [o for o, i in index.items() if o not in HEROES for row in found if row[i]]
        if theme is not None and others:
            theme_p.append(float(np.mean([o in THEMES[theme]["objects"] for o in others])))
    why = "no album whose summary names a known hero / theme and whose photos show a hero / theme object"
    out += [_mean(hero_p, "photo_hero_consistency", len(albums), why),
            _mean(same_p, "photo_same_hero", len(albums), why),
            _mean(theme_p, "photo_theme_agreement", len(albums), why)]
    return out
