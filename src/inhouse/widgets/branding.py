"""A widget's look: the server's branding settings, overridden field by field per widget."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from inhouse.config import HEX_COLOUR, BrandingSettings
from inhouse.errors import InvalidRequest

COLOURS = ("primary_colour", "background_colour", "text_colour")
TEXTS = {"title": 80, "welcome_text": 500}
FIELDS = (*COLOURS, *TEXTS)


def check_branding(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """The overrides a widget keeps: known fields only, colours as #rrggbb, short plain text;
    a None or empty value drops the override (the server's setting applies again)."""
    kept: dict[str, str] = {}
    for name, value in overrides.items():
        if name not in FIELDS:
            raise InvalidRequest(
                f"branding has no field {name!r}; fields: {', '.join(FIELDS)}", param="branding"
            )
        if value is None or value == "":
            continue
        if name in COLOURS and not re.match(HEX_COLOUR, value):
            raise InvalidRequest(
                f"branding.{name} must be a hex colour like #1f4fa8", param=f"branding.{name}"
            )
        if name in TEXTS and len(value) > TEXTS[name]:
            raise InvalidRequest(
                f"branding.{name} must be at most {TEXTS[name]} characters",
                param=f"branding.{name}",
            )
        kept[name] = value.lower() if name in COLOURS else value
    return kept


@dataclass(frozen=True)
class Look:
    """What a widget shows: its title, welcome text and colours (all checked)."""

    title: str
    welcome_text: str
    primary_colour: str
    background_colour: str
    text_colour: str

    @property
    def on_primary(self) -> str:
        """Black or white, whichever reads better on the primary colour (WCAG luminance)."""
        return "#000000" if _luminance(self.primary_colour) > 0.179 else "#ffffff"


def look(settings: BrandingSettings, overrides: Mapping[str, str]) -> Look:
    """The settings' branding with the widget's overrides on top."""
    return Look(
        title=overrides.get("title", settings.product_name),
        welcome_text=overrides.get("welcome_text", settings.welcome_text),
        primary_colour=overrides.get("primary_colour", settings.primary_colour),
        background_colour=overrides.get("background_colour", settings.background_colour),
        text_colour=overrides.get("text_colour", settings.text_colour),
    )


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
