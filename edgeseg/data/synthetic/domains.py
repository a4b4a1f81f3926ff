"""The synthetic domains: one street-scene generator, four looks, two label spaces.

``day``, ``night`` and ``fog`` share the fine label space and differ only in appearance (light
level, colour cast, fog, sensor noise, emissive lights), the way Cityscapes, BDD100K night and
foggy Cityscapes differ. ``coarse`` has a dusk look *and* a coarser label space (6 groups, as
Cityscapes' categories group its classes), so multi-domain heads see different class lists.
"""

from __future__ import annotations

from dataclasses import dataclass

# Fine label space, in train-id order, with Cityscapes' colours for the shared names.
FINE_CLASSES = ("road", "sidewalk", "building", "pole", "sign", "vegetation", "sky", "person", "vehicle")
FINE_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (153, 153, 153), (220, 220, 0),
    (107, 142, 35), (70, 130, 180), (220, 20, 60), (0, 0, 142),
)
ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, SKY, PERSON, VEHICLE = range(len(FINE_CLASSES))

# Coarse label space: Cityscapes-style categories over the fine classes.
COARSE_CLASSES = ("flat", "structure", "nature", "sky", "human", "vehicle")
COARSE_PALETTE = ((128, 64, 128), (70, 70, 70), (107, 142, 35), (70, 130, 180), (220, 20, 60), (0, 0, 142))
FINE_TO_COARSE = (0, 0, 1, 1, 1, 2, 3, 4, 5)  # index = fine id


@dataclass(frozen=True)
class DomainStyle:
    """How one domain looks. Ranges are (low, high), drawn uniformly per image."""

    name: str
    coarse_labels: bool  # True: masks use COARSE_CLASSES instead of FINE_CLASSES
    light: tuple[float, float]  # global light level multiplying every albedo
    tint_strength: float  # how far the light colour leans warm or cool
    warm_bias: float  # -1 (blue cast) .. +1 (orange cast): the domain's mean colour cast
    sky: str  # "day", "night", "fog" or "dusk": the sky gradient family
    shadows: bool  # cast shadows of vehicles and buildings onto the ground
    visibility_m: tuple[float, float]  # fog: distance (m) at which 63 % of the light is fog
    fog_level: tuple[float, float]  # fog colour brightness in 0..255
    noise_sigma: tuple[float, float]  # sensor noise std in 0..255 units
    lit_windows: float  # fraction of windows that glow (night)
    lamps: bool  # street-lamp and headlight glows added on top


NO_FOG = (1e6, 1e6)  # visibility so far that the fog step is skipped

DOMAIN_STYLES = {
    "day": DomainStyle(
        name="day", coarse_labels=False, light=(0.85, 1.15), tint_strength=0.08, warm_bias=0.0,
        sky="day", shadows=True, visibility_m=NO_FOG, fog_level=(0, 0), noise_sigma=(2, 6),
        lit_windows=0.0, lamps=False,
    ),
    "night": DomainStyle(
        name="night", coarse_labels=False, light=(0.15, 0.32), tint_strength=0.25, warm_bias=0.6,
        sky="night", shadows=False, visibility_m=(150, 400), fog_level=(20, 40), noise_sigma=(6, 12),
        lit_windows=0.35, lamps=True,
    ),
    "fog": DomainStyle(
        name="fog", coarse_labels=False, light=(0.8, 1.0), tint_strength=0.05, warm_bias=-0.2,
        sky="fog", shadows=False, visibility_m=(14, 40), fog_level=(170, 225), noise_sigma=(3, 7),
        lit_windows=0.0, lamps=False,
    ),
    "coarse": DomainStyle(
        name="coarse", coarse_labels=True, light=(0.5, 0.8), tint_strength=0.3, warm_bias=0.8,
        sky="dusk", shadows=True, visibility_m=(300, 900), fog_level=(150, 200), noise_sigma=(3, 8),
        lit_windows=0.2, lamps=False,
    ),
}
SYNTHETIC_DOMAINS = tuple(DOMAIN_STYLES)


def domain_classes(domain: str) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """(classes, palette) of a domain's label space."""
    style = DOMAIN_STYLES[domain]
    return (COARSE_CLASSES, COARSE_PALETTE) if style.coarse_labels else (FINE_CLASSES, FINE_PALETTE)
