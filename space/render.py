"""Drawing and formatting for the app: boxes, legend, counts table, severity and timing text.

Plain functions of a response dict (the JSON that TorchServe and the local inference core both
return), so the tests can call them without a server.
"""
from __future__ import annotations

import html

from trouble.count_range import (MIN_PHOTOS_FOR_A_RANGE, answered_as_validated, model_thresholds,
                                  typical_range_of)
from trouble.photo_checks import COUNT_TOO_LOW
from trouble.severity import GRADE_NAMES, grade_from_count, lesions, scale_text
# The drawing itself is shared with the batch CLI: trouble/render.py (the app draws through here).
from trouble.render import (DISPLAY_MAX_SIDE, analysis_time, draw_detections, of_working_copy,  # noqa: F401
                            palette_for, readable_time, thresholds_list)

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
    if len(classes) == 1:  # "per type" would promise more than such a model tells apart
        items.append(f'<span>(this model has one type, {html.escape(classes[0])}: every kind of lesion '
                     f'together)</span>')
    return f'<div class="trouble-legend">{"".join(items)}</div>'


def counts_rows(response: dict) -> list:
    """[[type, count], ..., ["Total", total]] for the counts table."""
    rows = [[name, int(response["counts"].get(name, 0))] for name in response["model"]["classes"]]
    rows.append(["Total", int(response["total"])])
    return rows


def severity_markdown(response: dict) -> str:
    """The grade, its scale, and what to make of it: how far the count may be off, and when it says
    nothing or too little (the answer's warnings: no skin in the photo, a small face not found to
    crop to, a photo without colour, a dark or small one; no lesion left at a threshold raised above the model's)."""
    severity = response["severity"]
    # What makes the grade say nothing comes first, above the grade's heading, not paragraphs below it.
    text = "".join(f"#### {warning['title']}\n{warning['detail']}\n\n" for warning in response["warnings"])
    if severity["lesion_count"] == 0 and _threshold_raised(response):
        text += ("#### No lesion was found at a threshold above the model's own\nLower it, or untick "
                 "\"One score threshold\" to use the model's.\n\n")
    lowered = _threshold_lowered(response)
    if lowered:
        text += ("#### A threshold below the model's own\nThe model keeps more boxes, and more of them are not "
                 "lesions: this count and grade are likely too high. Untick \"One score threshold\" to use the "
                 "model's.\n\n")
    # The heading, read alone, must not stand as if the warnings above it did not apply to it.
    codes = {warning["code"] for warning in response["warnings"]}
    too_low = set(COUNT_TOO_LOW)
    if response["image"].get("brightened_by"):  # a dark photo brightened for the model: off either way
        too_low.discard("dark")
    qualifier = (": likely lower, as the count reached the model's limit" if "count_capped" in codes
                 else ": likely lower, as the threshold is below the model's" if lowered
                 else ": likely higher, as the count is likely too low" if codes & too_low
                 else ": less sure, as the photo is dark" if "dark" in codes
                 else ": it says nothing if there is no face in the photo" if "little_skin" in codes else "")
    text += (f"### Severity: grade {severity['grade']} ({severity['name']}){qualifier}\n"
             f"{lesions(severity['lesion_count'])} found{count_range_text(response)}. "
             f"Scale: {scale_text()}: "
             f"Hayashi's lesion counts, applied here to every lesion the model sees in this photo (Hayashi "
             f"counts inflammatory lesions on half the face).\n\n"
             f"*A count of what the model sees in this photo, not a diagnosis.*")
    return text + validation_text(response)


def count_range_text(response: dict) -> str:
    """How far this count may be off, only for an answer made with the settings the figures were
    measured at, on a photo without warnings (trouble.count_range: the answer's
    severity.typical_range, found here for an archive made before answers carried it): "; the marked
    count on such a photo is typically 15-52 (moderate to very severe): on the 49 validation photos
    where the model's count was severe too, ACNE04's marked count was within -14 to +23 of the
    model's for 8 in 10 of them; the labels of those photos: 10 moderate, 25 severe, 14 very
    severe". Where the figures give no range for this grade, it says why."""
    validation = response["model"].get("validation") or {}
    # The figures are of colour close-ups: a photo with a warning is not one.
    if not validation or response["warnings"] or not answered_as_validated(response):
        return ""
    severity = response["severity"]
    typical = typical_range_of(response)
    grade = grade_from_count(severity["lesion_count"])
    name = GRADE_NAMES[grade]
    if validation.get("by_found_grade"):
        same_grade = validation["by_found_grade"][grade]
        if not same_grade:
            return f"; no validation photo had a {name} count, so there is no typical range for it"
        photos, labels = same_grade["images"], same_grade.get("labels")
        if photos < MIN_PHOTOS_FOR_A_RANGE or typical is None:
            text = (f"; only {photos} validation photo{'s' if photos != 1 else ''} had a {name} count: too few "
                    f"for a typical range")
        else:
            below, above = same_grade["marked_minus_found"]
            share = "8 in 10" if photos >= 10 else "most"
            # The range first: it is what a reader looks for; how it was found comes after.
            text = (f"; the marked count on such a photo is typically {typical['low']}-{typical['high']} "
                    f"({_grades_spanned(typical['low'], typical['high'])}): on the {photos} validation photos where "
                    f"the model's count was {name} too, ACNE04's marked count was within {below:+d} to {above:+d} "
                    f"of the model's for {share} of them")
        if labels:
            graded = sum(labels)
            which = "those photos" if graded == photos else f"the {graded} of them that carry one"
            text += f"; the labels of {which}: " + ", ".join(f"{n} {GRADE_NAMES[k]}" for k, n in enumerate(labels) if n)
        return text
    if typical is None:
        return ""
    return (f"; the marked count on such a photo is typically {typical['low']}-{typical['high']} "
            f"({_grades_spanned(typical['low'], typical['high'])}): the model's counts were off by "
            f"{validation['count_mae']:.1f} on average in validation (more on some photos)")


def _grades_spanned(low: int, high: int) -> str:
    names = [GRADE_NAMES[grade_from_count(value)] for value in (low, high)]
    return names[0] if names[0] == names[1] else f"{names[0]} to {names[1]}"


def _own_and_used_thresholds(response: dict) -> tuple[dict, dict]:
    """The model's own score thresholds (those of test-time augmentation where it ran) and the answer's."""
    settings = response["settings"]
    return model_thresholds(response["model"], bool(settings.get("tta"))), settings["score_thresholds"]


def _threshold_lowered(response: dict) -> bool:
    own, used = _own_and_used_thresholds(response)
    return any(used.get(name, 1) < value for name, value in own.items())


def _threshold_raised(response: dict) -> bool:
    own, used = _own_and_used_thresholds(response)
    return any(used.get(name, 0) > value for name, value in own.items())


def validation_text(response: dict) -> str:
    """How far to trust the count: what the model scored on the photos it was validated on."""
    validation = response["model"].get("validation")
    if not validation:
        return ""
    facts = []
    if validation.get("count_mae") is not None:
        facts.append(f"its lesion count was off by {validation['count_mae']:.1f} per photo on average (more on "
                     f"photos with many lesions)")
    if validation.get("grade_accuracy") is not None:
        facts.append(f"its grade matched the label for {validation['grade_accuracy']:.0%} of them")
    facts.append(f"it scored {validation['mAP50']:.2f} for how well its boxes match the marked lesions "
                 f"(mAP50; 1 is perfect)")
    listed = facts[0] if len(facts) == 1 else ", ".join(facts[:-1]) + ", and " + facts[-1]
    text = (f"\n\nHow far to trust this: on the {validation['images']} photos the model was checked on "
            f"({_data_name(validation['data'])}), {listed}.")
    if validation.get("thresholds_chosen_on_these_photos"):
        text += " Its score thresholds were chosen on those same photos, so these figures flatter it a little."
    if validation["mAP50"] < 0.5:
        text += " **This is a weak model: expect missed lesions and some that are not there.**"
    if not answered_as_validated(response):
        text += (" Those figures are for the model's own settings; this answer used others (a threshold set "
                 "in the app, or slicing or test-time augmentation switched), so its count may be off by more "
                 "or less.")
    return text


def _data_name(path: str) -> str:
    """data/acne04/valid/annotations.json (or any JSON in a split folder) → "acne04, valid split";
    another name as it is."""
    parts = str(path).replace("\\", "/").split("/")
    if len(parts) >= 3 and parts[-1].endswith(".json"):
        return f"{parts[-3]}, {parts[-2]} split"
    return parts[-1]


def thresholds_text(response: dict) -> str:
    """Which score thresholds were applied, and whether they are the model's own."""
    own, used = _own_and_used_thresholds(response)
    parts = thresholds_list(used)
    named = "the model's for test-time augmentation" if response["settings"].get("tta") else "the model's defaults"
    origin = named if used == own else "set in the app"
    return f"score thresholds: {parts} ({origin})"


def slicing_text(settings: dict, image: dict | None = None) -> str:
    """What the model was run on: the whole photo (or the face's crop), or how many slices, and
    how many passes over each (test-time augmentation). image: the answer's `image`, whose working
    copy the slices are cut from (a photo over 4096 px is decoded smaller)."""
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
        size = f"{settings['slice_size']} px{of_working_copy(image)}"
        return f"{prefix}sliced: {slices} slices of {size}{plus_whole}{each}"
    why = f"no larger than a {settings['slice_size']} px slice" if settings.get("sliced") else "slicing off"
    if passes > 1:
        return f"{prefix}{whole} ({why}), {augmented}"
    return f"{prefix}{whole} in one pass ({why})"


def status_markdown(response: dict, answered_by: str, round_trip_ms: float, photo_name: str = "") -> str:
    """Which photo, who answered with which model (its version, and the day it was archived), how
    long it took, and with which settings."""
    timings = response.get("timings_ms", {})
    settings = response["settings"]
    image = response["image"]
    slicing = slicing_text(settings, image)
    model = response["model"]
    which = f"`{photo_name.replace('`', '')}`: " if photo_name else ""
    archived = f", archived {model['archived'][:10]}" if model.get("archived") else ""
    taken = f", taken {readable_time(image['taken_at'])}" if image.get("taken_at") else ""
    return (f"{which}Answered by **{answered_by}** in {round_trip_ms / 1000:.2f} s "
            f"(model {timings.get('inference', 0) / 1000:.2f} s), with the model {model['name']} "
            f"{model['version']}{archived}. "
            f"Photo {image['width']}x{image['height']} px{taken}, {slicing}; {thresholds_text(response)}.")


ERROR_PREFIX = "**Could not analyse the photo.** "


def error_markdown(message: str) -> str:
    return ERROR_PREFIX + message


# The analysis button's label: the notes below tell the user to press it.
BUTTON_LABEL = "Find troubles"
STALE_NOTE = f"**Settings changed since this answer: press {BUTTON_LABEL} to apply them.** "


# Said when an analysis ends after another photo was chosen (its results are not shown for it).
DROPPED_NOTE = (f"*The analysis of the photo before was dropped when this one was chosen: press {BUTTON_LABEL} "
                f"to analyse this one.*")


def mark_stale(text: str) -> str:
    """The status line, or the severity text, of an answer whose settings have been changed since
    (once; nothing to mark when there is no answer)."""
    if not text or text.startswith((STALE_NOTE, ERROR_PREFIX, DROPPED_NOTE)):
        return text
    return STALE_NOTE + ("\n\n" if text.startswith("#") else "") + text


def unmark_stale(text: str) -> str:
    """The text as it was before mark_stale: the settings are back to those of the answer."""
    if not text or not text.startswith(STALE_NOTE):
        return text
    text = text[len(STALE_NOTE):]
    return text[2:] if text.startswith("\n\n#") else text
