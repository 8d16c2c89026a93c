"""Severity grade from a lesion count (Hayashi criteria, as used by ACNE04).

0-5 lesions: mild, 6-20: moderate, 21-50: severe, more than 50: very severe.
"""

GRADE_NAMES = ("mild", "moderate", "severe", "very severe")
# Upper bound (inclusive) of the lesion count for grades 0, 1 and 2; above the last is grade 3.
GRADE_UPPER_COUNTS = (5, 20, 50)


def scale_text() -> str:
    """The grades with their lesion counts: "grade 0 mild (0-5), ..., grade 3 very severe (over 50)"."""
    lows = (0, *(upper + 1 for upper in GRADE_UPPER_COUNTS))
    ranges = [f"{low}-{upper}" for low, upper in zip(lows, GRADE_UPPER_COUNTS)] + [f"over {GRADE_UPPER_COUNTS[-1]}"]
    return ", ".join(f"grade {grade} {name} ({counted})"
                     for grade, (name, counted) in enumerate(zip(GRADE_NAMES, ranges)))


SCALE_TEXT = f"Hayashi: {scale_text()}"


def grade_from_count(count: int) -> int:
    """Return the Hayashi grade (0..3) for a whole-face lesion count."""
    if count < 0:
        raise ValueError(f"lesion count must be >= 0, got {count}")
    for grade, upper in enumerate(GRADE_UPPER_COUNTS):
        if count <= upper:
            return grade
    return len(GRADE_UPPER_COUNTS)


def lesions(count: int) -> str:
    return f"{count} lesion{'' if count == 1 else 's'}"


def describe_grade(count: int) -> dict:
    """Grade, its name and the scale, ready to put into a response."""
    grade = grade_from_count(count)
    return {"grade": grade, "name": GRADE_NAMES[grade], "lesion_count": count, "scale": SCALE_TEXT}
