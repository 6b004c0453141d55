"""Upload size limits: per file and in total, one-line errors at the boundary."""

import pytest

from flower_core.errors import FlowerError
from flower_core.intake.uploads import check_total, check_upload

MB = 1024**2


def test_a_file_at_the_limit_passes_and_one_byte_more_is_refused():
    check_upload("rose.jpg", 2 * MB, 2)
    with pytest.raises(FlowerError) as caught:
        check_upload("rose.jpg", 2 * MB + 1, 2)
    assert str(caught.value) == "rose.jpg is 2.0 MB, over the limit of 2 MB per file"


def test_files_sent_together_are_held_to_a_total():
    check_total([MB, MB], 2)
    check_total([], 2)
    with pytest.raises(FlowerError) as caught:
        check_total(iter([MB, MB, 1]), 2)
    message = str(caught.value)
    assert message.startswith("3 files of 2.0 MB in all, over the limit of 2 MB at once")
    assert "\n" not in message
