"""Decoding settings as the app shows them: UI ranges, defaults, and checks in plain words.

The sliders and dropdowns in the Settings accordion are built from ``LIMITS`` and ``DEFAULTS``;
``options_from_ui`` turns the values a browser (or a ``gradio_client`` call) sends into a checked
``smart3d.sampler.SamplingOptions``. Every problem raises ``SettingsError`` (a ``ValueError``) whose
message names the setting, its valid range and the value received; the handlers show it as a
``gr.Error``.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace

from smart3d.masking import SCHEDULES
from smart3d.sampler import POLICIES, SamplingOptions

COLOR_MODES: tuple[str, ...] = ("step", "confidence")   # how committed tokens are coloured
MAX_SEED = 2**31 - 1


class SettingsError(ValueError):
    """A setting outside its range, in plain words."""


@dataclass(frozen=True)
class Limits:
    """Ranges of the settings the UI offers (a subset of what ``SamplingOptions.check`` allows)."""

    steps: tuple[int, int] = (1, 100)
    temperature: tuple[float, float] = (0.05, 2.0)
    top_k: tuple[int, int] = (0, 512)            # 0 = sample among all codes
    guidance: tuple[float, float] = (0.0, 10.0)  # 1 = no guidance


LIMITS = Limits()
DEFAULTS = SamplingOptions()        # the library defaults (the handlers add previews)


def _number(name: str, value, lo: float, hi: float, integer: bool) -> float | int:
    kind = "a whole number" if integer else "a number"
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be {kind} between {lo:g} and {hi:g}; got {value!r}.") from None
    if not math.isfinite(x) or not lo <= x <= hi or (integer and x != int(x)):
        raise SettingsError(f"{name} must be {kind} between {lo:g} and {hi:g}; got {value!r}.")
    return int(x) if integer else x


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SettingsError(f"Unknown {name} {value!r}; choose one of: {', '.join(choices)}.")
    return value


def options_from_ui(steps, temperature_start, temperature_end, top_k, guidance, schedule, policy) -> SamplingOptions:
    """Checked sampling options from UI values (the handlers switch previews on for the forming surface)."""
    lim = LIMITS
    opts = SamplingOptions(
        num_steps=_number("Steps", steps, *lim.steps, integer=True),
        schedule=_choice("schedule", schedule, SCHEDULES),
        policy=_choice("commit policy", policy, POLICIES),
        top_k=_number("Top-k", top_k, *lim.top_k, integer=True),
        temperature=(_number("Temperature (start)", temperature_start, *lim.temperature, integer=False),
                     _number("Temperature (end)", temperature_end, *lim.temperature, integer=False)),
        cfg_scale=_number("Guidance", guidance, *lim.guidance, integer=False),
        preview=False,
    )
    try:
        return opts.check()
    except ValueError as err:                     # the library's own limits, should the two ever differ
        raise SettingsError(str(err)) from None


COMPARABLE = ("guidance", "temperature", "steps", "schedule", "policy")   # settings "Compare" can set per side


def compare_options(base: SamplingOptions, setting: str, value) -> tuple[SamplingOptions, str]:
    """``base`` with one ``setting`` (one of ``COMPARABLE``) set from a typed ``value`` (text): the checked
    options and a short label ("guidance 1.5"). A temperature is one number (start = end) or two."""
    setting = _choice("setting to compare", setting, COMPARABLE)
    lim, text = LIMITS, str(value).strip()
    if setting == "guidance":
        opts = replace(base, cfg_scale=_number("Guidance", text, *lim.guidance, integer=False))
        label = f"guidance {opts.cfg_scale:g}"
    elif setting == "temperature":
        parts = text.replace(",", " ").split() or [""]
        if len(parts) > 2:
            raise SettingsError(f"Temperature is one number or two (start end); got {value!r}.")
        t = [_number("Temperature", v, *lim.temperature, integer=False) for v in parts]
        opts = replace(base, temperature=(t[0], t[-1]))
        label = f"temperature {t[0]:g} -> {t[-1]:g}"
    elif setting == "steps":
        opts = replace(base, num_steps=_number("Steps", text, *lim.steps, integer=True))
        label = f"{opts.num_steps} steps"
    elif setting == "schedule":
        opts, label = replace(base, schedule=_choice("schedule", text, SCHEDULES)), f"{text} schedule"
    else:
        opts, label = replace(base, policy=_choice("commit policy", text, POLICIES)), f"{text} policy"
    return opts.check(), label


def resolve_seed(seed, randomize: bool) -> int:
    """The seed to use: a fresh random one when ``randomize``, else the given whole number."""
    if not isinstance(randomize, bool):
        raise SettingsError(f"Randomize seed must be true or false; got {randomize!r}.")
    if randomize:
        return secrets.randbelow(MAX_SEED + 1)
    return _number("Seed", seed, 0, MAX_SEED, integer=True)


def check_color_mode(color_by) -> str:
    return _choice("colouring", color_by, COLOR_MODES)
