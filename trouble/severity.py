"""Severity grade from a lesion count (Hayashi criteria, as used by ACNE04).

0-5 lesions: mild, 6-20: moderate, 21-50: severe, more than 50: very severe.
"""

GRADE_NAMES = ("mild", "moderate", "severe", "very severe")
# Upper bound (inclusive) of the lesion count for grades 0, 1 and 2; above the last is grade 3.
GRADE_UPPER_COUNTS = (5, 20, 50)
SCALE_TEXT = "Hayashi: 0-5 mild, 6-20 moderate, 21-50 severe, >50 very severe"


def grade_from_count(count: int) -> int:
    """Return the Hayashi grade (0..3) for a whole-face lesion count."""
    if count < 0:
        raise ValueError(f"lesion count must be >= 0, got {count}")
    for grade, upper in enumerate(GRADE_UPPER_COUNTS):
        if count <= upper:
            return grade
    return len(GRADE_UPPER_COUNTS)


def describe_grade(count: int) -> dict:
    """Grade, its name and the scale, ready to put into a response."""
    grade = grade_from_count(count)
    return {"grade": grade, "name": GRADE_NAMES[grade], "lesion_count": count, "scale": SCALE_TEXT}
