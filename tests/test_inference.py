"""The shared inference core and image decoding, in process."""
from __future__ import annotations

import io
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.conftest import ACNE04_PHOTOS, REPO
from tests.synthetic_data import garbled, make_image, png_header_only
from trouble.images import BadInput, decode_image
from trouble.severity import grade_from_count


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def large_photo():
    """1600x1200 with many small lesions: sliced into several 320 px slices."""
    image, _, _ = make_image(size=(1600, 1200), n_lesions=40, seed=7)
    return jpeg(image)


def test_batched_slices_give_the_same_detections_as_one_at_a_time(detector, large_photo):
    settings = detector.settings.slicing
    try:
        detector.settings.slicing = replace(settings, slice_size=320, batch_size=1)
        one_at_a_time = detector.predict(large_photo, score_threshold=0.05)
        detector.settings.slicing = replace(settings, slice_size=320, batch_size=8)
        batched = detector.predict(large_photo, score_threshold=0.05)
    finally:
        detector.settings.slicing = settings
    assert one_at_a_time["total"] > 0
    assert batched["counts"] == one_at_a_time["counts"]
    np.testing.assert_allclose([d["box"] for d in batched["detections"]],
                               [d["box"] for d in one_at_a_time["detections"]], atol=0.5)


def test_slicing_changes_what_the_model_sees(detector, large_photo):
    sliced = detector.predict(large_photo, score_threshold=0.05, sliced=True, slice_size=320)
    whole = detector.predict(large_photo, score_threshold=0.05, sliced=False)
    assert sliced["settings"]["sliced"] and not whole["settings"]["sliced"]
    # 1600x1200 in 320 px slices overlapping by 20% (a 256 px step): SAHI cuts 30 of them.
    assert sliced["settings"]["slices"] == 30 and whole["settings"]["slices"] == 0
    small = detector.predict(ACNE04_PHOTOS[0].read_bytes(), sliced=True, slice_size=640)
    assert small["settings"]["sliced"] and small["settings"]["slices"] == 0  # 640 px: no larger than a slice
    # More passes over the photo: slices plus the whole image, so more time, different detections.
    assert sliced["timings_ms"]["inference"] > whole["timings_ms"]["inference"]
    assert [d["box"] for d in sliced["detections"]] != [d["box"] for d in whole["detections"]]


def test_face_framing_crops_a_small_face_and_keeps_boxes_in_photo_pixels(detector):
    """A face photo in the middle of a wide grey photo is cropped to the face; a close-up stays whole."""
    photo = np.asarray(Image.open(ACNE04_PHOTOS[0]).convert("RGB"))
    canvas = np.full((1920, 1920, 3), 128, np.uint8)
    canvas[640:1280, 640:1280] = photo
    framed = detector.predict(canvas, score_threshold=0.05, sliced=False, framing="face")
    assert framed["settings"]["framing"] == "face"
    x1, y1, x2, y2 = (int(v) for v in framed["settings"]["face_crop"])
    assert 540 <= x1 <= 800 and 540 <= y1 <= 800 and 1120 <= x2 <= 1400 and 1120 <= y2 <= 1400  # around the face
    boxes = np.array([d["box"] for d in framed["detections"]])
    assert len(boxes) and (boxes[:, [0, 2]] >= x1).all() and (boxes[:, [0, 2]] <= x2).all()
    assert (boxes[:, [1, 3]] >= y1).all() and (boxes[:, [1, 3]] <= y2).all()
    # The model ran on the crop: the crop's own detections, moved to the photo's pixels.
    crop = detector.predict(np.ascontiguousarray(canvas[y1:y2, x1:x2]), score_threshold=0.05, sliced=False)
    np.testing.assert_allclose(boxes - [x1, y1, x1, y1], [d["box"] for d in crop["detections"]], atol=0.5)
    not_framed = detector.predict(canvas, sliced=False, framing="none")
    assert not_framed["settings"]["face_crop"] is None
    close_up = detector.predict(photo, sliced=False, framing="face")
    assert close_up["settings"]["framing"] == "face" and close_up["settings"]["face_crop"] is None
    # Every answer says when the face is small in what the model saw: the count is likely too low then.
    assert [w["code"] for w in not_framed["warnings"]] == ["small_face"]
    assert not_framed["warnings"][0]["title"].endswith("face framing was off")  # no face was looked for
    assert not_framed["image"]["skin_fraction"] < 0.15 < close_up["image"]["skin_fraction"]
    # (framed ran at threshold 0.05, where the smoke model may keep its limit of boxes: count_capped)
    assert [w for w in framed["warnings"] if w["code"] != "count_capped"] == [] and close_up["warnings"] == []


def test_a_face_under_5_percent_of_a_wide_photo_is_cropped_to_and_a_grey_photo_is_not():
    """Under 5% skin the skin mask falls back to "all skin", which had made every such crop fail its
    "most of the skin inside" check: a face a fifth of the photo's width was left small."""
    from trouble.framing import face_crop

    photo = Image.open(ACNE04_PHOTOS[0]).convert("RGB")
    for fill in (235, 128):  # a light wall, a grey one
        canvas = Image.new("RGB", (3200, 3200), (fill,) * 3)
        canvas.paste(photo, (1280, 1280))  # 4% of the photo
        x1, y1, x2, y2 = face_crop(np.asarray(canvas))
        assert 1180 <= x1 <= 1440 and 1180 <= y1 <= 1440 and 1760 <= x2 <= 2020 and 1760 <= y2 <= 2020, fill
        # Without colour there is no skin to judge a crop by: it stays whole, as a grey close-up does.
        assert face_crop(np.asarray(canvas.convert("L").convert("RGB"))) is None, fill


def test_a_face_cropped_from_a_wide_photo_is_judged_by_its_crop():
    """Its skin had been measured on the whole photo: a small face that framing cropped got
    little_skin, whose advice is to crop the photo to the face, and so no typical range."""
    from trouble.framing import face_crop
    from trouble.photo_checks import judge_photo

    for path in ACNE04_PHOTOS:
        photo = Image.open(path).convert("RGB")
        canvas = Image.new("RGB", (5 * photo.width, 5 * photo.height), (235, 235, 235))
        canvas.paste(photo, (2 * photo.width, 2 * photo.height))  # 4% of the photo
        rgb = np.asarray(canvas)
        crop = face_crop(rgb)
        assert crop is not None, path.name
        cropped, whole = judge_photo(rgb, "face", crop, canvas.size), judge_photo(rgb, "none", None, canvas.size)
        assert cropped.warnings == [] and cropped.skin_fraction > 0.15, (path.name, cropped)
        assert [warning["code"] for warning in whole.warnings] == ["little_skin"], path.name  # its face is small


def test_photo_warnings_name_what_makes_a_count_say_little():
    """No colour to judge by, hardly any skin, or a small face the model was not run on a crop of;
    nothing for a close-up. The app, the API and the batch CLI all show these."""
    from trouble.photo_checks import photo_warnings

    def codes(skin, cropped=False):
        return [warning["code"] for warning in photo_warnings(skin, "face", cropped)]

    assert codes(None) == ["no_colour"] and codes(None, cropped=True) == ["no_colour"]
    assert codes(0.04) == ["little_skin"] and codes(0.04, cropped=True) == ["little_skin"]
    assert codes(0.05) == ["small_face"] and codes(0.149) == ["small_face"] and codes(0.1, cropped=True) == []
    assert codes(0.15) == [] and codes(0.9) == []
    small = photo_warnings(0.08, "face", False)[0]
    assert small["title"] == "The face looks small in this photo (8% of it is skin), and no face was found to crop to"
    assert "likely too low" in small["detail"] and "framing" not in small["detail"]
    # With face framing off no face was looked for: the warning says so, and how to turn it on.
    unframed = photo_warnings(0.08, "none", False)[0]
    assert unframed["title"].endswith("and face framing was off") and "turn face framing on" in unframed["detail"]


def jpeg_copy(photo: Image.Image, quality: int = 90) -> np.ndarray:
    """The photo as a phone or an app would send it after changing it: saved as JPEG."""
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_sepia_tinted_dark_and_small_photos_are_named_in_the_answer(detector):
    """The helper's finds: a sepia copy, or a grey one with a coloured logo or caption bar, had been
    taken for a colour photo (the logo even made it "little skin, crop to the face"); a dark copy or a
    thumbnail got a grade with no word that the count is likely too low."""
    from bench.colour_variety import SEPIA_MATRIX
    from trouble.photo_checks import DARK_BRIGHTNESS
    from trouble.skin import MIN_COLOUR_VARIETY, brightness, colour_variety, skin_fraction

    for path in ACNE04_PHOTOS:  # the real photos themselves: colour, light and size as trained on
        photo = Image.open(path).convert("RGB")
        rgb = jpeg_copy(photo)
        assert colour_variety(rgb) >= MIN_COLOUR_VARIETY + 1 and brightness(rgb) >= DARK_BRIGHTNESS + 20, path
        grey = photo.convert("L").convert("RGB")
        with_logo, with_bar = grey.copy(), grey.copy()
        with_logo.paste((255, 0, 0), (10, 10, 110, 50))  # 1% of the photo
        with_bar.paste((0, 0, 255), (0, grey.height - 40, grey.width, grey.height))  # a caption bar, 6%
        sepia = ImageOps.colorize(photo.convert("L"), (40, 20, 0), (255, 240, 200))
        for copy in (grey, with_logo, with_bar, sepia):
            assert skin_fraction(jpeg_copy(copy)) is None, path  # no colour to tell skin by
        apps_sepia = Image.fromarray(np.clip(np.asarray(photo, float) @ SEPIA_MATRIX.T, 0, 255).astype(np.uint8))
        for quality in (75, 50):  # as a messaging app sends it: JPEG's coarse colour had passed as colour
            assert skin_fraction(jpeg_copy(apps_sepia, quality)) is None, (path, quality)
        dark = Image.fromarray((np.asarray(photo) * 0.3).astype(np.uint8))
        assert brightness(jpeg_copy(dark)) < DARK_BRIGHTNESS, path

    photo = Image.open(ACNE04_PHOTOS[1]).convert("RGB")
    close_up = detector.predict(jpeg_copy(photo), sliced=False)
    assert close_up["warnings"] == []
    sepia = detector.predict(jpeg_copy(ImageOps.colorize(photo.convert("L"), (40, 20, 0), (255, 240, 200))),
                             sliced=False)
    assert [w["code"] for w in sepia["warnings"]] == ["no_colour"] and sepia["image"]["skin_fraction"] is None
    dark = detector.predict(jpeg_copy(Image.fromarray((np.asarray(photo) * 0.3).astype(np.uint8))), sliced=False)
    assert [w["code"] for w in dark["warnings"]] == ["dark"]  # not "little skin": its skin is too dark to find
    thumbnail = detector.predict(jpeg_copy(photo.resize((120, 120), Image.LANCZOS)), sliced=False)
    assert [w["code"] for w in thumbnail["warnings"]] == ["small_photo"]
    assert thumbnail["warnings"][0]["title"] == "This photo is only 120x120 px"
    # At threshold 0 a pass keeps the model's limit of boxes: the answer says the count was cut there.
    capped = detector.predict(jpeg_copy(photo), score_threshold=0.0, sliced=False)
    assert capped["total"] == detector.max_per_pass == 100  # the smoke config's max_per_img
    assert [w["code"] for w in capped["warnings"]] == ["count_capped"]
    assert capped["warnings"][0]["title"] == "The count reached the model's limit (100 boxes per pass)"


def test_photo_warnings_for_dark_and_small_photos():
    from trouble.photo_checks import DARK_BRIGHTNESS, SMALL_PHOTO_SIDE, photo_warnings

    def codes(skin=0.5, cropped=False, brightness=None, size=None):
        return [w["code"] for w in photo_warnings(skin, "face", cropped, brightness=brightness, analysed_size=size)]

    assert codes(brightness=DARK_BRIGHTNESS) == [] and codes(brightness=DARK_BRIGHTNESS - 1) == ["dark"]
    assert codes(0.0, brightness=30) == ["dark"] and codes(0.1, brightness=30) == ["dark"]  # no skin check
    assert codes(None, brightness=30) == ["dark"]
    assert codes(size=(SMALL_PHOTO_SIDE, 2000)) == [] and codes(size=(2000, SMALL_PHOTO_SIDE - 1)) == ["small_photo"]
    crop = photo_warnings(0.5, "face", True, analysed_size=(150, 150))[0]
    assert crop["title"] == "The face's part of this photo is only 150x150 px" and "full size" in crop["detail"]
    brightened = photo_warnings(0.5, "face", False, brightness=40, brightened_by=2.75)[0]
    assert brightened["title"] == "A dark photo, brightened 2.8x for the model" and "less sure" in brightened["detail"]
    assert "likely too low" in photo_warnings(0.5, "face", False, brightness=40)[0]["detail"]
    # Brightened for the model, its skin is judged (on the brightened photo): a small face is named too.
    assert [w["code"] for w in photo_warnings(0.1, "none", False, brightness=30, brightened_by=3.0)] == \
        ["dark", "small_face"]


def test_a_lit_face_cropped_from_a_dim_room_is_not_dark(detector):
    """Found in an audit: dark or not was judged of the whole photo, so a well-lit face in a dim room
    was brightened (1.8x, over-exposed) and its answer said "dark" although the model saw the face's crop."""
    room = Image.new("RGB", (2400, 1600), (25, 25, 25))
    room.paste(Image.open(ACNE04_PHOTOS[2]).convert("RGB"), (880, 480))
    cropped = detector.predict(jpeg_copy(room), framing="face", sliced=False)
    assert cropped["settings"]["face_crop"] and cropped["image"]["brightened_by"] is None
    assert "dark" not in [w["code"] for w in cropped["warnings"]] and cropped["image"]["brightness"] > 90
    whole = detector.predict(jpeg_copy(room), framing="none", sliced=False)  # the model sees the dim room
    assert whole["image"]["brightened_by"] > 1 and "dark" in [w["code"] for w in whole["warnings"]]


def test_a_small_face_in_a_dark_wide_photo_is_named(detector):
    """A face in the middle of a dark, wide photo: "dark" had been the only warning, as if the count
    were merely less sure, where the face is too small in it for the model (the count is likely too low)."""
    from trouble.photo_checks import judge_photo

    face = (np.asarray(Image.open(ACNE04_PHOTOS[1]).convert("RGB").resize((500, 500))) * 0.35).astype(np.uint8)
    wide = Image.new("RGB", (1920, 1080), (15, 15, 15))
    wide.paste(Image.fromarray(face), (710, 290))
    answer = detector.predict(jpeg_copy(wide), framing="none", sliced=False)
    assert [w["code"] for w in answer["warnings"]] == ["dark", "small_face"] and answer["image"]["brightened_by"] > 1
    # Not brightened, its skin is too dark to judge: the dark warning alone, which says the count is likely too low.
    unbrightened = judge_photo(np.asarray(wide), "none", None, wide.size, brighten_dark=False)
    assert [w["code"] for w in unbrightened.warnings] == ["dark"] and "likely too low" in unbrightened.warnings[0]["detail"]


def test_a_dark_photo_is_brightened_for_the_model_and_the_answer_says_so(detector):
    """The model found half the lesions at half the light (docs/FIGURES.md, "Photo conditions"): a dark
    photo reaches it brightened, the answer says by how much, and the boxes are of the photo sent."""
    from trouble.photo_checks import BRIGHTEN_TO, DARK_BRIGHTNESS, brightened, brightening_gain
    from trouble.skin import brightness

    photo = Image.open(ACNE04_PHOTOS[1]).convert("RGB")
    dark = jpeg_copy(Image.fromarray((np.asarray(photo) * 0.4).astype(np.uint8)))
    gain = brightening_gain(brightness(dark))
    assert 1 < gain <= 4 and abs(brightness(brightened(dark, gain)) - BRIGHTEN_TO) < 3
    assert brightening_gain(DARK_BRIGHTNESS) == 1 and brightening_gain(0) == 4  # at most 4x: noise grows with it
    answer = detector.predict(dark, score_threshold=0.05, sliced=False)
    assert answer["image"]["brightened_by"] == gain and answer["image"]["brightness"] < DARK_BRIGHTNESS
    assert answer["warnings"][0]["title"] == f"A dark photo, brightened {gain:.1f}x for the model"
    # The model saw what brightened() makes: the same boxes as the brightened copy sent with brightening off.
    try:
        detector.settings.brighten_dark = False
        unbrightened = detector.predict(dark, score_threshold=0.05, sliced=False)
        as_if_brightened = detector.predict(brightened(dark, gain), score_threshold=0.05, sliced=False)
    finally:
        detector.settings.brighten_dark = True
    assert unbrightened["image"]["brightened_by"] is None and unbrightened["warnings"][0]["title"] == "A dark photo"
    assert answer["detections"] == as_if_brightened["detections"] != unbrightened["detections"]
    # A photo in ordinary light is not touched.
    assert detector.predict(jpeg_copy(photo), sliced=False)["image"]["brightened_by"] is None


def test_boxes_are_in_original_pixels_when_the_photo_is_downscaled(detector, large_photo):
    full = detector.predict(large_photo, score_threshold=0.05, sliced=False)
    max_side = detector.settings.max_side
    try:
        detector.settings.max_side = 800  # the model sees 800x600; boxes must come back in 1600x1200
        capped = detector.predict(large_photo, score_threshold=0.05, sliced=False)
    finally:
        detector.settings.max_side = max_side
    assert (capped["image"]["width"], capped["image"]["height"]) == (1600, 1200)
    assert (capped["image"]["working_width"], capped["image"]["working_height"]) == (800, 600)
    boxes = np.array([d["box"] for d in capped["detections"]])
    assert len(boxes) and boxes[:, 2].max() > 800  # beyond the working image: scaled back up
    assert boxes[:, 2].max() <= 1600 and boxes[:, 3].max() <= 1200
    assert full["image"]["working_width"] == 1600


def test_per_type_thresholds_filter_each_type(detector):
    photo = ACNE04_PHOTOS[1].read_bytes()
    low = detector.predict(photo, score_threshold=0.05)
    thresholds = detector.thresholds
    try:
        detector.thresholds = {name: (0.05 if i == 0 else 0.99) for i, name in enumerate(detector.classes)}
        mixed = detector.predict(photo)
    finally:
        detector.thresholds = thresholds
    first = detector.classes[0]
    assert mixed["counts"][first] == low["counts"][first]
    assert all(mixed["counts"][name] == 0 for name in detector.classes[1:] if name != first)
    assert mixed["severity"]["grade"] == grade_from_count(mixed["total"])


def test_nms_iou_setting_reaches_the_model(smoke_mar, detector):
    """A lower NMS IoU leaves no two boxes of a type overlapping above it (the default 0.6 does).

    TOOD's NMS runs on its boxes as they come, some reaching past the photo's edge; clipped to the
    photo afterwards, two such boxes may overlap more. So the pairs compared lie inside the photo."""
    from trouble.inference import TroubleDetector

    strict = TroubleDetector.from_path(smoke_mar, device="cpu", nms_iou=0.2)
    data = ACNE04_PHOTOS[0].read_bytes()
    default, fewer = (d.predict(data, score_threshold=0.05, sliced=False) for d in (detector, strict))
    assert default["settings"]["nms_iou"] == 0.6 and fewer["settings"]["nms_iou"] == 0.2

    def worst_overlap(response):
        worst = 0.0
        size = (response["image"]["width"], response["image"]["height"]) * 2
        inside = [d for d in response["detections"] if all(0 < v < limit for v, limit in zip(d["box"], size))]
        for i, a in enumerate(inside):
            for b in inside[i + 1:]:
                if a["type"] == b["type"]:
                    worst = max(worst, box_iou(a["box"], b["box"]))
        return worst

    assert worst_overlap(default) > 0.2, "the smoke model should give overlapping boxes at NMS 0.6"
    assert worst_overlap(fewer) <= 0.2 + 1e-6


def box_iou(a, b):
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_decode_a_50_megapixel_photo_at_reduced_scale():
    width, height = 8660, 5774  # 50 MP
    array = np.full((height, width, 3), (200, 160, 140), np.uint8)
    array[::50, :, 0] = 30
    data = jpeg(Image.fromarray(array))
    del array
    decoded = decode_image(data)
    assert (decoded.original_width, decoded.original_height) == (width, height)
    assert max(decoded.rgb.shape[:2]) <= 4096
    assert decoded.scale_to_original == pytest.approx(width / decoded.rgb.shape[1])


def test_the_pixel_limit_is_ours_not_pil_global_state():
    """A 90 MP photo is under the 120 MP limit whether or not SAHI has switched PIL's 89 MP warning off."""
    pil_default = 89_478_485
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, pil_default
    try:
        decoded = decode_image(jpeg(Image.new("L", (9500, 9500), 180)))
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    assert (decoded.original_width, decoded.original_height) == (9500, 9500)
    # A bomb PIL itself refuses (over twice its limit) is named with our limit, not PIL's alone.
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, pil_default
    try:
        with pytest.raises(BadInput) as refused:
            decode_image(png_header_only(20000, 20000))
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    assert refused.value.code == "too_many_pixels" and refused.value.http_status == 413
    assert str(refused.value) == ("The image has more than 179 megapixels; the limit is 120 MP. Resize it and send it "
                                  "again.")
    # An archive that allows more than PIL does (max_pixels raised) is not quoted as the limit
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, pil_default
    try:
        with pytest.raises(BadInput, match="more than 179 megapixels; more than the image decoder accepts"):
            decode_image(png_header_only(20000, 20000), max_pixels=300_000_000)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def test_a_png_with_megabytes_of_compressed_text_is_named_as_such():
    """PIL refuses compressed text chunks over 1 MB unpacked: the photo is not corrupt, it carries
    too much metadata (it was called "truncated or corrupt")."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (50 * 2**20), zip=True)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 150, 130)).save(buffer, "PNG", pnginfo=info)
    with pytest.raises(BadInput) as refused:
        decode_image(buffer.getvalue())
    assert refused.value.code == "too_much_metadata" and refused.value.http_status == 413
    assert "save it again without metadata" in str(refused.value)


def test_a_strip_is_refused_and_a_long_photo_answered_with_face_framing_on(detector):
    """20000x16 would be under a pixel high for the model (it once crashed OpenCV's resize)."""
    for size, refused in (((20000, 16), True), ((2000, 100), False)):
        buffer = io.BytesIO()
        Image.new("RGB", size, (200, 150, 120)).save(buffer, "PNG")
        if refused:
            with pytest.raises(BadInput, match="20:1") as error:
                detector.predict(buffer.getvalue(), framing="face")
            assert error.value.code == "extreme_aspect_ratio"
            continue
        response = detector.predict(buffer.getvalue(), framing="face")
        assert (response["image"]["width"], response["image"]["height"]) == size
        assert response["settings"]["face_crop"] is None


def test_annotated_photo_shows_the_pixels_the_model_saw():
    """16-bit and transparent PNGs are drawn as the model saw them (scaled to 8 bits, on white)."""
    from trouble.render import annotate_image

    gray16 = Image.fromarray(np.full((64, 64), 20000, np.uint16))
    buffer = io.BytesIO()
    gray16.save(buffer, "PNG")
    response = {"detections": [], "model": {"classes": ["acne"]}, "counts": {"acne": 0}, "image": {"width": 64}}
    drawn = np.asarray(annotate_image(buffer.getvalue(), response))
    assert abs(int(drawn[10, 10, 0]) - round(20000 / 65535 * 255)) <= 1


def test_exif_orientation_and_modes():
    base, _, _ = make_image(size=(300, 200), n_lesions=3, seed=2)
    exif = Image.Exif()
    exif[0x0112] = 8
    buffer = io.BytesIO()
    base.save(buffer, "JPEG", exif=exif)
    rotated = decode_image(buffer.getvalue())
    assert rotated.rgb.shape == (300, 200, 3) and (rotated.original_width, rotated.original_height) == (200, 300)
    assert rotated.format == "JPEG"
    rgba = base.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: becomes white, not black
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    assert decode_image(buffer.getvalue()).rgb.min() == 255


def test_a_malformed_exif_tag_does_not_stop_the_photo_from_turning():
    """A phone or editor may write one tag of the wrong type (here Make, ASCII, renumbered as a SHORT
    tag): PIL reads the photo, and rewriting its EXIF (ImageOps.exif_transpose) raised struct.error."""
    base, _, _ = make_image(size=(300, 200), n_lesions=3, seed=2)
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Maker"
    buffer = io.BytesIO()
    base.save(buffer, "JPEG", quality=95, exif=exif)
    data = buffer.getvalue().replace(b"\x01\x0f\x00\x02", b"\x01\x52\x00\x02", 1)
    assert data != buffer.getvalue()
    decoded = decode_image(data)
    assert (decoded.original_width, decoded.original_height) == (200, 300)
    upright = np.asarray(base.transpose(Image.Transpose.ROTATE_270), dtype=float)
    assert np.abs(decoded.rgb.astype(float) - upright).mean() < 6


def test_a_threshold_keeps_the_boxes_whose_answered_score_reaches_it(detector):
    """An evaluation sees the answer's scores, rounded to 4 decimals, and keeps score >= threshold: the
    answer must keep by the same rounded score, or a raw 0.22957 is dropped here and kept there."""
    photo = ACNE04_PHOTOS[0].read_bytes()
    everything = detector.predict(photo, score_threshold=0.05)["detections"]
    scores = sorted({d["score"] for d in everything})[-8:]  # the surest: within any cap on the boxes kept
    assert len(scores) == 8
    for score in scores:  # each at a threshold of exactly its answered score: about half are under it raw
        kept = detector.predict(photo, score_threshold=score)["detections"]
        assert len(kept) == sum(1 for d in everything if d["score"] >= score), score


def photo_taken_at(date_time_original=None, offset=None, format="JPEG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    if date_time_original is not None:
        exif.get_ifd(0x8769)[0x9003] = date_time_original
    if offset is not None:
        exif.get_ifd(0x8769)[0x9011] = offset
    buffer = io.BytesIO()
    make_image(size=(300, 200), n_lesions=3, seed=2)[0].save(buffer, format, quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def test_when_a_photo_was_taken_is_read_from_its_exif(detector):
    """Follow-up photos are compared by the day they were taken (a file's own date changes when it is
    copied): the answer carries EXIF DateTimeOriginal, with the camera's offset where it wrote one."""
    assert decode_image(photo_taken_at("2026:10:01 14:22:05", "+02:00")).taken_at == "2026-10-01T14:22:05+02:00"
    assert decode_image(photo_taken_at("2026:10:01 14:22:05")).taken_at == "2026-10-01T14:22:05"
    assert decode_image(photo_taken_at("2026:10:01 14:22:05", "two hours")).taken_at == "2026-10-01T14:22:05"
    assert decode_image(photo_taken_at("2026:10:01 14:22:05", format="HEIF")).taken_at == "2026-10-01T14:22:05"
    # Stored as bytes (the UNDEFINED type), as some cameras write it.
    assert decode_image(photo_taken_at(b"2026:10:01 14:22:05", b"+02:00")).taken_at == "2026-10-01T14:22:05+02:00"
    for unknown in (None, "0000:00:00 00:00:00", "yesterday", ""):  # none, or what no clock gives: not a date
        assert decode_image(photo_taken_at(unknown)).taken_at is None, unknown
    response = detector.predict(photo_taken_at("2026:10:01 14:22:05", "-05:00"))
    assert response["image"]["taken_at"] == "2026-10-01T14:22:05-05:00"
    assert (response["image"]["width"], response["image"]["height"]) == (200, 300)  # the photo still turned


def test_a_huge_png_of_few_bytes_is_shrunk_before_it_is_converted(tmp_path):
    """100 MP of one colour is a few hundred KB as a PNG; 16-bit, RGBA and palette ones were converted at
    full size (3 GB for a 16-bit one). Now each is shrunk first. Decoded in a subprocess of its own, to
    measure the decoding's peak memory alone (the PNG is made here)."""
    images = {"16-bit grey": (Image.fromarray(np.full((10000, 10000), 30000, np.uint16)), 30000 >> 8),
              "RGBA": (Image.new("RGBA", (10000, 10000), (200, 150, 120, 255)), 200),
              "palette": (Image.new("L", (10000, 10000), 90).convert("P"), 90)}
    # VmHWM, this process's own peak: ru_maxrss would carry over the (large) test process's across exec.
    probe = ("import sys\n"
             "from trouble.images import decode_image\n"
             "def peak_mb():\n"
             "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
             "    return int(line.split()[1]) // 1024\n"
             "before = peak_mb()\n"
             "decoded = decode_image(open(sys.argv[1], 'rb').read())\n"
             "print(decoded.rgb.shape, decoded.original_width, decoded.rgb[0, 0, 0], peak_mb() - before)")
    for kind, (image, red) in images.items():
        path = tmp_path / "huge.png"
        image.save(path)
        del image
        result = subprocess.run([sys.executable, "-c", probe, str(path)], cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, (kind, result.stderr[-2000:])
        shape, width, value, added_mb = result.stdout.rsplit(" ", 3)
        assert shape.startswith("(4096, 4096, 3)") and width == "10000", (kind, result.stdout)
        assert abs(int(value) - red) <= 1, (kind, result.stdout)
        # The decoded file itself (200 MB at 16 bits, 400 MB in RGBA) plus the working copies at 4096 px.
        assert int(added_mb) < 1000, f"{added_mb} MB more to decode a 100 MP {kind} PNG"


def test_a_request_for_too_many_model_passes_is_refused_before_the_model_runs(detector, large_photo, synthetic_data):
    """1600x1200 in 128 px slices with test-time augmentation: 192 slices, 193 images x 4 passes."""
    limit = detector.settings.max_model_passes
    with pytest.raises(BadInput, match=f"772 model passes .*allows {limit} per photo") as error:
        detector.predict(large_photo, sliced=True, slice_size=128, tta=True)
    assert error.value.code == "too_much_work" and error.value.http_status == 400
    try:  # the limit is the archive's setting (model-config.yaml: trouble.max_model_passes)
        detector.settings.max_model_passes = 3
        with pytest.raises(BadInput, match=r"4 model passes \(the whole image, each in 4 test-time"):
            detector.predict(large_photo, sliced=False, tta=True)
        assert detector.predict(large_photo, sliced=False, tta=False)["settings"]["slices"] == 0
        # An evaluation at such settings stops, naming the photo: leaving refused photos out would flatter it.
        from train.evaluate import EvaluationError, predict_ground_truth_images

        with pytest.raises(EvaluationError, match="model passes"):
            predict_ground_truth_images(detector, synthetic_data / "valid" / "annotations.json", limit=1, tta="true")
    finally:
        detector.settings.max_model_passes = limit


def test_heic_photo_decodes_the_right_way_up():
    """iPhones save HEIC by default; its rotation is applied as for a JPEG's EXIF orientation."""
    base, _, _ = make_image(size=(300, 200), n_lesions=3, seed=2)
    exif = Image.Exif()
    exif[0x0112] = 6  # pillow-heif stores this as HEIF's own rotation
    buffer = io.BytesIO()
    base.save(buffer, "HEIF", quality=95, exif=exif.tobytes())
    decoded = decode_image(buffer.getvalue())
    assert decoded.format == "HEIF" and (decoded.original_width, decoded.original_height) == (200, 300)
    upright = np.asarray(base.transpose(Image.Transpose.ROTATE_270), dtype=float)
    assert np.abs(decoded.rgb.astype(float) - upright).mean() < 6  # lossy, but the same picture


def test_heic_without_its_plugin_says_what_is_missing(tmp_path):
    """A server installed without pillow-heif names the package instead of "not a readable image",
    for the photo's bytes and for the bytearray TorchServe hands the handler."""
    heic = tmp_path / "photo.heic"
    Image.new("RGB", (64, 48), (200, 150, 130)).save(heic, "HEIF")
    probe = ("import sys; sys.modules['pillow_heif'] = None\n"  # as if it were not installed
             "from trouble.images import BadInput, decode_image\n"
             "for data in (open(sys.argv[1], 'rb').read(), bytearray(open(sys.argv[1], 'rb').read())):\n"
             "    try: decode_image(data)\n"
             "    except BadInput as e: print(e.code, e.http_status, e)")
    result = subprocess.run([sys.executable, "-c", probe, str(heic)], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout + result.stderr
    for line in lines:
        assert line.startswith("unsupported_format 415 This is a HEIC photo") and "pillow-heif" in line


@pytest.mark.parametrize("data,code", [(b"", "empty_body"), (b"GIF89a" + b"\0" * 40, "not_an_image"),
                                       (b"%PDF-1.5", "unsupported_format"),
                                       (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "corrupt_image")])
def test_bad_bytes_raise_bad_input(data, code):
    with pytest.raises(BadInput) as error:
        decode_image(data)
    assert error.value.code == code and str(error.value)


def test_a_jpeg_whose_data_ends_early_is_refused_and_a_photo_on_grey_is_not():
    """PIL decodes a JPEG whose data stops early, if it still ends with an end marker, without an
    error: the rows it has no data for come out flat grey, and a count on the half photo was answered."""
    def jpeg(image, **options):
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90, **options)
        return out.getvalue()

    face = Image.open(ACNE04_PHOTOS[0]).convert("RGB")
    on_grey = Image.new("RGB", (1280, 1280), (128, 128, 128))  # the grey libjpeg fills with
    on_grey.paste(face, (320, 320))
    whole = jpeg(on_grey)
    black_border = Image.new("RGB", (640, 800))  # ends in black, the colour the check's second decode leaves
    black_border.paste(face, (0, 0))
    for photo in (whole, jpeg(on_grey, progressive=True), jpeg(on_grey.convert("L")), jpeg(face),
                  jpeg(on_grey.convert("CMYK")), jpeg(black_border)):
        for max_side in (4096, 300):  # as served, and decoded at a reduced scale (the app's quick check)
            decode_image(photo, max_side=max_side)  # whole files, with a band of their own or none: accepted
    data = jpeg(face)
    taller = bytearray(data)  # a header claiming twice the photo's height: the lower half has no data
    height_at = data.index(b"\xff\xc0") + 5  # the frame header (baseline): length, precision, height, width
    taller[height_at:height_at + 2] = (2 * face.height).to_bytes(2, "big")
    cmyk = jpeg(on_grey.convert("CMYK"))
    for broken, least, most in ((data[:len(data) // 2] + b"\xff\xd9", 30, 70),
                                (whole[:len(whole) // 2] + b"\xff\xd9", 30, 70), (bytes(taller), 45, 50),
                                (cmyk[:len(cmyk) // 2] + b"\xff\xd9", 30, 70)):
        for max_side in (4096, 300):
            with pytest.raises(BadInput) as error:
                decode_image(broken, max_side=max_side)
            missing = re.search(r"data ends early: (\d+)% of the photo is missing", str(error.value))
            assert error.value.code == "corrupt_image" and missing and least <= int(missing[1]) <= most, \
                str(error.value)


def test_a_baseline_jpeg_without_its_end_marker_is_analysed_and_a_cut_one_refused():
    """Some cameras and apps write JPEGs without the end marker, which viewers show: it had been
    refused as truncated. Without it, a file cut short is measured as the mended ones are."""
    out = io.BytesIO()
    Image.open(ACNE04_PHOTOS[0]).convert("RGB").save(out, "JPEG", quality=90)
    data = out.getvalue()
    whole = decode_image(data).rgb
    for max_side in (4096, 300):
        assert decode_image(data[:-2], max_side=max_side).rgb.shape == decode_image(data, max_side=max_side).rgb.shape
    np.testing.assert_array_equal(decode_image(data[:-2]).rgb, whole)
    with pytest.raises(BadInput) as error:
        decode_image(data[:len(data) // 2])
    assert error.value.code == "corrupt_image" and "data ends early" in str(error.value)
    # Cut short and padded with zeros (a crash, an interrupted copy): the zeros would decode as garbage,
    # not as grey that can be measured. Refused as truncated, as before the end-marker retry.
    with pytest.raises(BadInput) as error:
        decode_image(data[:len(data) // 2] + bytes(4096))
    assert error.value.code == "corrupt_image"
    progressive = io.BytesIO()
    Image.open(ACNE04_PHOTOS[0]).convert("RGB").save(progressive, "JPEG", quality=90, progressive=True)
    with pytest.raises(BadInput) as error:  # what its missing scans lack cannot be measured: refused
        decode_image(progressive.getvalue()[:-2])
    assert error.value.code == "corrupt_image"


def test_a_garbled_jpeg_is_refused_and_one_padded_or_followed_by_data_is_not():
    """PIL drops libjpeg's warnings: garbled bytes decoded as noise, and a progressive JPEG cut and
    given its end marker back decoded blurred, both analysed without a word."""
    photo = Image.open(ACNE04_PHOTOS[1]).convert("RGB")
    baseline, progressive = io.BytesIO(), io.BytesIO()
    photo.save(baseline, "JPEG", quality=90)
    photo.save(progressive, "JPEG", quality=90, progressive=True)
    baseline, progressive = baseline.getvalue(), progressive.getvalue()
    for broken in (garbled(baseline, seed=1), garbled(progressive), progressive[:len(progressive) // 2] + b"\xff\xd9"):
        noise = np.abs(np.asarray(Image.open(io.BytesIO(broken)).convert("RGB"), dtype=int) - np.asarray(photo)).mean()
        assert noise > 0.3  # what PIL alone decodes, without an error
        with pytest.raises(BadInput) as error:
            decode_image(broken)
        assert error.value.code == "corrupt_image" and "The JPEG's data is damaged (the decoder reports: Corrupt JPEG " \
            "data: " in str(error.value), str(error.value)
    whole = decode_image(baseline).rgb
    # End marker padded (as some cameras do), other files' bytes after it, an MPO's second image: whole photos
    for padded in (baseline[:-2] + b"\0" + baseline[-2:], baseline[:-2] + bytes(16) + baseline[-2:],
                   baseline + b"trailing bytes", baseline + baseline):
        np.testing.assert_array_equal(decode_image(padded).rgb, whole)


def test_a_cut_heic_is_refused_in_one_line():
    """libheif's message ends in a line break, which had been shown inside the brackets."""
    out = io.BytesIO()
    Image.open(ACNE04_PHOTOS[0]).save(out, "HEIF", quality=80)
    with pytest.raises(BadInput) as error:
        decode_image(out.getvalue()[:len(out.getvalue()) // 2])
    assert error.value.code == "corrupt_image" and "\n" not in str(error.value) and str(error.value).endswith(").")


def test_bad_parameters_raise_bad_input(detector):
    for options in ({"score_threshold": -0.1}, {"score_threshold": "nan"}, {"slice_size": 10_000},
                    {"sliced": "sometimes"}, {"framing": "tight"}):
        with pytest.raises(BadInput):
            detector.resolve_request(**options)


def test_input_size_sets_what_the_model_sees_and_boxes_stay_in_photo_pixels(detector, smoke_mar, large_photo):
    from trouble.inference import TroubleDetector

    larger = TroubleDetector.from_path(smoke_mar, device="cpu", input_size=640)
    assert detector.input_size == 320 and larger.input_size == 640  # the smoke config's test size, overridden
    default = detector.predict(large_photo, score_threshold=0.05, sliced=False)
    upscaled = larger.predict(large_photo, score_threshold=0.05, sliced=False)
    assert default["settings"]["input_size"] == 320 and upscaled["settings"]["input_size"] == 640
    assert [d["box"] for d in upscaled["detections"]] != [d["box"] for d in default["detections"]]
    boxes = np.array([d["box"] for d in upscaled["detections"]])
    assert len(boxes) and boxes[:, 2].max() > 640 and boxes[:, 2].max() <= 1600  # mapped back to 1600x1200
    with pytest.raises(ValueError, match="input_size must be between 128 and 2048"):
        TroubleDetector.from_path(smoke_mar, device="cpu", input_size=64)


def test_fusion_averages_what_the_passes_agree_on():
    from trouble.fusion import fuse_passes

    first = (np.array([[10, 10, 30, 30], [100, 100, 120, 120], [200, 10, 220, 30]], float),
             np.array([0.6, 0.4, 0.5]), np.array([0, 0, 1]))
    second = (np.array([[12, 10, 32, 30], [11, 12, 31, 32]], float), np.array([0.2, 0.3]), np.array([0, 0]))
    boxes, scores, labels = fuse_passes([first, second], iou_threshold=0.55)
    rows = sorted(zip(scores.astype(float).round(4).tolist(), labels.tolist(), boxes.astype(float).round(2).tolist()),
                  reverse=True)
    # Highest score first: the second pass's 0.3 box joins the 0.6 box (IoU 0.75); its 0.2 box
    # overlaps that cluster too, but the cluster holds a box of its pass already: it starts its own,
    # which, overlapping the surer cluster as one pass's NMS would not allow, is then dropped.
    assert rows[0] == (0.45, 0, [10.33, 10.67, 30.33, 30.67])  # (0.6 + 0.3) / 2, boxes weighted 2:1
    assert (0.25, 1, [200.0, 10.0, 220.0, 30.0]) in rows       # one pass of two: half its score
    assert (0.2, 0, [100.0, 100.0, 120.0, 120.0]) in rows
    assert len(rows) == 3 and list(scores) == sorted(scores, reverse=True)  # not (0.1, 0, [12, 10, 32, 30])
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
    assert len(fuse_passes([empty, empty], 0.55)[0]) == 0


def test_a_mirrored_pass_gives_boxes_in_the_photo_own_pixels(detector):
    """The mirrored pass of a photo sees the same pixels as a plain pass of the mirrored photo; its
    boxes, mapped back, are that pass's boxes mirrored."""
    rgb, _, _ = make_image(size=(480, 360), n_lesions=12, seed=3)
    rgb = np.asarray(rgb)
    (mirrored_boxes, mirrored_scores, _), = detector.sahi_model.forward_pass([rgb], 320, True)
    (plain_boxes, plain_scores, _), = detector.sahi_model.forward_pass([np.ascontiguousarray(rgb[:, ::-1])], 320, False)
    assert len(plain_boxes) > 0
    expected = np.stack([480 - plain_boxes[:, 2], plain_boxes[:, 1], 480 - plain_boxes[:, 0], plain_boxes[:, 3]], 1)
    np.testing.assert_allclose(mirrored_boxes, expected, atol=1e-3)
    np.testing.assert_allclose(mirrored_scores, plain_scores, atol=1e-6)


def test_test_time_augmentation_runs_its_passes_with_its_own_thresholds(detector, large_photo):
    tta = detector.settings.tta
    try:
        detector.settings.tta = replace(tta, sizes=[256, 320], flip=True, score_thresholds={})
        detector.tta_thresholds = {name: 0.02 for name in detector.classes}
        plain = detector.predict(large_photo, sliced=False)
        augmented = detector.predict(large_photo, sliced=False, tta="true")
        sliced = detector.predict(large_photo, sliced=True, slice_size=640, tta=True, score_threshold=0.05)
    finally:
        detector.settings.tta = tta
        detector.tta_thresholds = dict(detector.thresholds)
    assert plain["settings"]["passes"] == 1 and plain["settings"]["tta"] is False
    assert augmented["settings"]["passes"] == 4 and augmented["settings"]["tta"] is True
    assert augmented["settings"]["score_thresholds"] == {name: 0.02 for name in detector.classes}
    assert plain["settings"]["score_thresholds"] == detector.thresholds
    assert augmented["total"] > 0 and min(d["score"] for d in augmented["detections"]) >= 0.02
    assert [d["box"] for d in augmented["detections"]] != [d["box"] for d in plain["detections"]]
    boxes = np.array([d["box"] for d in augmented["detections"]])
    assert boxes[:, 2].max() <= 1600 and boxes[:, 3].max() <= 1200 and boxes[:, 2].max() > 800
    assert sliced["settings"]["passes"] == 4 and sliced["settings"]["slices"] > 0  # each slice: 4 passes
    with pytest.raises(BadInput, match="tta must be true or false"):
        detector.resolve_request(tta="sometimes")


def test_fused_passes_hold_no_two_boxes_that_one_pass_would_not():
    """Fused boxes move as boxes join them: two clusters of one lesion had ended up overlapping more
    than each pass's NMS allows, counted twice (51 such pairs in these 30 random photos)."""
    from trouble.fusion import box_iou_one, fuse_passes

    def nms(boxes, scores, iou):
        kept = []
        for i in np.argsort(-scores):
            if not kept or box_iou_one(boxes[i], boxes[kept]).max() < iou:
                kept.append(i)
        return boxes[kept], scores[kept]

    rng = np.random.default_rng(0)
    for _ in range(30):  # 40 lesions, 4 passes that each miss a fifth of them and place boxes a little apart
        centres, sides = rng.uniform(0, 200, (40, 2)), rng.uniform(8, 20, (40, 1))
        passes = []
        for _ in range(4):
            found = rng.uniform(size=40) < 0.8
            boxes = (np.hstack([centres - sides / 2, centres + sides / 2]) + rng.normal(0, 2.5, (40, 4)))[found]
            boxes, scores = nms(boxes, rng.uniform(0.05, 1, 40)[found], 0.55)
            passes.append((boxes, scores, np.zeros(len(boxes), dtype=np.int64)))
        boxes, scores, labels = fuse_passes(passes, 0.55)
        assert 40 <= len(boxes) <= 4 * 40 and np.all(np.diff(scores) <= 0)
        for i in range(len(boxes) - 1):
            assert box_iou_one(boxes[i], boxes[i + 1:]).max() < 0.55


def test_a_photo_whose_passes_would_run_past_the_time_limit_is_refused_not_left_to_time_out(detector, large_photo):
    """A 12 MP photo sliced with test-time augmentation (196 passes) was allowed by the pass limit and
    then killed by TorchServe's 300 s timeout on a busy machine ("Worker died.", the worker restarted).
    The time of all the passes is projected from the first ones; one that goes over is refused."""
    limit = detector.settings.max_seconds_per_photo
    try:  # the limit is the archive's setting (model-config.yaml: trouble.max_seconds_per_photo)
        detector.settings.max_seconds_per_photo = 1
        with pytest.raises(BadInput, match=r"This photo would take about \d+ s \(193 model passes, [0-9.]+ s each "
                                           r"on this server\); it allows 1 s per photo") as error:
            detector.predict(large_photo, sliced=True, slice_size=128)  # 192 slices and the whole image
        assert error.value.code == "too_much_work" and error.value.http_status == 400
        # One pass is never refused: nothing is left to save by refusing it.
        assert detector.predict(large_photo, sliced=False)["settings"]["slices"] == 0
    finally:
        detector.settings.max_seconds_per_photo = limit
    assert detector.predict(large_photo, sliced=True, slice_size=640)["settings"]["slices"] > 1
