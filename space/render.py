"""Drawing and formatting for the app: boxes, legend, counts table, severity and timing text.

Plain functions of a response dict (the JSON that TorchServe and the local inference core both
return), so the tests can call them without a server.
"""
from __future__ import annotations

import html

# The drawing itself is shared with the batch CLI: trouble/render.py (the app draws through here).
from trouble.render import DISPLAY_MAX_SIDE, draw_detections, palette_for  # noqa: F401


def legend_html(response: dict) -> str:
    """The legend for the page: a coloured swatch, the type and its count, per type."""
    classes = response["model"]["classes"]
    palette = palette_for(classes)
    items = []
    for name in classes:
        items.append(
            f'<span class="trouble-legend-item" data-type="{html.escape(name)}" '
            f'style="display:inline-flex;align-items:center;gap:6px;margin-right:16px;">'
            f'<span class="trouble-swatch" style="display:inline-block;width:16px;height:16px;'
            f'border:1px solid #000;background:{palette[name]};"></span>'
            f'<span>{html.escape(name)}: {int(response["counts"].get(name, 0))}</span></span>')
    return f'<div class="trouble-legend">{"".join(items)}</div>'


def counts_rows(response: dict) -> list:
    """[[type, count], ..., ["Total", total]] for the counts table."""
    rows = [[name, int(response["counts"].get(name, 0))] for name in response["model"]["classes"]]
    rows.append(["Total", int(response["total"])])
    return rows


def severity_markdown(response: dict) -> str:
    severity = response["severity"]
    return (f"### Severity: grade {severity['grade']} ({severity['name']})\n"
            f"{severity['lesion_count']} lesions found. Scale: {severity['scale']}.\n\n"
            f"*A count of what the model sees in this photo, not a diagnosis.*{validation_text(response)}")


def validation_text(response: dict) -> str:
    """How far to trust the count: what the model scored on the photos it was validated on."""
    validation = response["model"].get("validation")
    if not validation:
        return ""
    facts = []
    if validation.get("count_mae") is not None:
        facts.append(f"its lesion count was off by {validation['count_mae']:.1f} per photo on average")
    if validation.get("grade_accuracy") is not None:
        facts.append(f"its grade matched the label for {validation['grade_accuracy']:.0%} of them")
    facts.append(f"mAP50 {validation['mAP50']:.2f}")
    text = (f"\n\nOn the {validation['images']} photos it was validated on (`{validation['data']}`), "
            + ", ".join(facts) + ".")
    if not _validated_settings(response):
        text += (" Those figures are for the model's own settings; this answer used others (a threshold set "
                 "in the app, or slicing or test-time augmentation switched), so its count may be off by more "
                 "or less.")
    return text


def _validated_settings(response: dict) -> bool:
    """Whether the answer was made with the settings the model's validation figures were measured at
    (slicing where the archive recorded it: archives made before it did not)."""
    settings, model = response["settings"], response["model"]
    validated_tta = bool(model["validation"].get("tta"))
    validated_sliced = model["validation"].get("sliced")
    if validated_sliced is None:
        sliced_as_validated = True
    elif validated_sliced:
        sliced_as_validated = bool(settings.get("sliced"))
    else:  # slicing on for a photo no larger than a slice changes nothing: only slices count
        sliced_as_validated = not settings.get("slices")
    return (sliced_as_validated and bool(settings.get("tta")) == validated_tta
            and settings["score_thresholds"] == _model_thresholds(model, validated_tta))


def _model_thresholds(model: dict, tta: bool) -> dict:
    """The model's own score thresholds: those of test-time augmentation when it is on."""
    return model.get("tta_score_thresholds" if tta else "score_thresholds", {})


def thresholds_text(response: dict) -> str:
    """Which score thresholds were applied, and whether they are the model's own."""
    used = response["settings"]["score_thresholds"]
    parts = ", ".join(f"{name} {value:.2f}" for name, value in used.items())
    tta = bool(response["settings"].get("tta"))
    own = "the model's for test-time augmentation" if tta else "the model's defaults"
    origin = own if used == _model_thresholds(response["model"], tta) else "set in the app"
    return f"score thresholds: {parts} ({origin})"


def slicing_text(settings: dict) -> str:
    """What the model was run on: the whole photo (or the face's crop), or how many slices, and
    how many passes over each (test-time augmentation)."""
    crop, prefix, extra_pass, whole = settings.get("face_crop"), "", "the whole photo", "whole photo"
    if crop:
        x1, y1, x2, y2 = (round(v) for v in crop)
        prefix = f"cropped to the face ({x2 - x1}x{y2 - y1} px at {x1},{y1}), "
        extra_pass = whole = "the crop"
    passes = settings.get("passes") or 1
    augmented = f"in {passes} passes fused (test-time augmentation)"
    slices = settings.get("slices")
    if slices:
        plus_whole = f" plus {extra_pass}" if settings.get("full_image_pass") else ""
        each = f", each {augmented}" if passes > 1 else ""
        return f"{prefix}sliced: {slices} slices of {settings['slice_size']} px{plus_whole}{each}"
    why = f"no larger than a {settings['slice_size']} px slice" if settings.get("sliced") else "slicing off"
    if passes > 1:
        return f"{prefix}{whole} ({why}), {augmented}"
    return f"{prefix}{whole} in one pass ({why})"


def status_markdown(response: dict, answered_by: str, round_trip_ms: float) -> str:
    """Who answered, how long it took, and with which settings."""
    timings = response.get("timings_ms", {})
    settings = response["settings"]
    slicing = slicing_text(settings)
    image = response["image"]
    return (f"Answered by **{answered_by}** in {round_trip_ms / 1000:.2f} s "
            f"(model {timings.get('inference', 0) / 1000:.2f} s). "
            f"Photo {image['width']}x{image['height']} px, {slicing}; {thresholds_text(response)}.")


ERROR_PREFIX = "**Could not analyse the photo.** "


def error_markdown(message: str) -> str:
    return ERROR_PREFIX + message


STALE_NOTE = "**Settings changed since this answer: press Find troubles to apply them.** "


def mark_stale(status: str) -> str:
    """The status line of an answer whose settings have been changed since (once; nothing to mark
    when there is no answer)."""
    if not status or status.startswith((STALE_NOTE, ERROR_PREFIX)):
        return status
    return STALE_NOTE + status
