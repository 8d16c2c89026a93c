"""How far an answer's lesion count may be off: the range the marked count typically lies in, from
the model's own validation figures (which train.archive puts in the archive), for the API, the batch
CSV and the app alike.

The figures hold for colour close-ups analysed at the settings they were measured at, so a range is
given only for such an answer: no photo warning, the model's own thresholds, slicing and test-time
augmentation as in validation.
"""
from __future__ import annotations

from trouble.severity import grade_from_count

# Fewer validation photos than this with a count of the answer's grade give no typical range.
MIN_PHOTOS_FOR_A_RANGE = 5


def model_thresholds(model: dict, tta: bool) -> dict:
    """The model's own score thresholds (an answer's `model`): those of test-time augmentation when
    it is on."""
    return model.get("tta_score_thresholds" if tta else "score_thresholds", {})


def answered_as_validated(response: dict) -> bool | None:
    """Whether the answer was made with the settings the model's validation figures were measured at
    (slicing where the archive recorded it: archives made before it did not); None for a model
    without validation figures."""
    settings, model = response["settings"], response["model"]
    validation = model.get("validation")
    if not validation:
        return None
    validated_tta = bool(validation.get("tta"))
    validated_sliced = validation.get("sliced")
    if validated_sliced is None:
        sliced_as_validated = True
    elif validated_sliced:
        sliced_as_validated = bool(settings.get("sliced"))
    else:  # slicing on for a photo no larger than a slice changes nothing: only slices count
        sliced_as_validated = not settings.get("slices")
    return (sliced_as_validated and bool(settings.get("tta")) == validated_tta
            and settings["score_thresholds"] == model_thresholds(model, validated_tta))


def typical_count_range(response: dict) -> dict | None:
    """{"low", "high", "photos", "basis"}: where the marked count on such a photo typically lies.

    From the validation photos on which the model's count fell in the same grade as this one (the
    error grows with the count): the 10th to the 90th percentile of their marked count's offset from
    the model's, "basis": "same_grade". From the average error of all of them ("mean_error") where
    the archive has no figures by grade (archived before them). None where no range can be given:
    no validation figures, a photo warning, other settings than validated, or fewer than
    MIN_PHOTOS_FOR_A_RANGE validation photos with a count of this grade; also for an answer without
    warnings (an archive older than them), which may have had one."""
    validation = response["model"].get("validation") or {}
    # An archive made before answers carried warnings gives none: not the same as "no warning".
    if not validation or response.get("warnings", ["not given"]) or not answered_as_validated(response):
        return None
    count = response["severity"]["lesion_count"]
    if validation.get("by_found_grade"):
        same_grade = validation["by_found_grade"][grade_from_count(count)]
        if not same_grade or same_grade["images"] < MIN_PHOTOS_FOR_A_RANGE:
            return None
        below, above = same_grade["marked_minus_found"]
        return {"low": max(0, count + below), "high": max(0, count + above), "photos": same_grade["images"],
                "basis": "same_grade"}
    error = validation.get("count_mae")
    if error is None:
        return None
    return {"low": max(0, round(count - error)), "high": round(count + error), "photos": validation.get("images"),
            "basis": "mean_error"}


def typical_range_of(response: dict) -> dict | None:
    """The answer's own severity.typical_range; computed here for an answer from a server older
    than that field."""
    severity = response["severity"]
    return severity["typical_range"] if "typical_range" in severity else typical_count_range(response)
