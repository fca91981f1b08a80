"""The quickstart's picture judges (rae_xla/eval/shape_classes.py) on the synthetic dataset's own drawings."""
import numpy as np
import pytest

from rae_xla.data import synthetic
from rae_xla.eval import shape_classes

SIZE, CLASSES = 64, 10


def _drawings(split: str, count: int, offset: int = 0):
    """Images of classes 0..9 (repeating) rendered like the dataset, centre square: (count, 64, 64, 3), labels."""
    labels = (np.arange(count) + offset) % CLASSES
    images = [synthetic.render(int(c), i, split, SIZE) for i, c in enumerate(labels)]
    left = (images[0].shape[1] - SIZE) // 2
    return np.stack([im[:, left:left + SIZE] for im in images]), labels


@pytest.fixture(scope="module")
def judge():
    images, labels = _drawings("train", 120)
    return shape_classes.ShapeJudge(images, labels)


def test_the_datasets_own_pictures_score_full_marks(judge):
    images, labels = _drawings("validation", 60)
    assert judge.accuracy(images, labels) == 1.0
    assert shape_classes.class_colour_accuracy(images, labels, CLASSES) == 1.0


def test_pictures_of_the_next_class_score_zero(judge):
    """Class c+1 has another colour and another shape (shapes cycle with period 4, colours with 10)."""
    images, labels = _drawings("validation", 40)
    assert judge.accuracy(images, (labels - 1) % CLASSES) == 0.0
    assert shape_classes.class_colour_accuracy(images, (labels - 1) % CLASSES, CLASSES) == 0.0


def test_a_blob_of_the_right_colour_is_judged_by_shape(judge):
    """A disc in each class's colour: right colour for all, right shape only for the disc classes (0, 4, 8)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = np.full((CLASSES, SIZE, SIZE, 3), 60, np.uint8)
    for c in range(CLASSES):
        images[c][(yy - 30) ** 2 + (xx - 34) ** 2 < 17 ** 2] = synthetic.class_colour(c).astype(np.uint8)
    labels = np.arange(CLASSES)
    assert shape_classes.class_colour_accuracy(images, labels, CLASSES) == 1.0
    assert list(judge.predict(images)) == [synthetic.SHAPES.index("disc")] * CLASSES
    assert judge.accuracy(images, labels) == pytest.approx(3 / 10)


def test_a_picture_without_saturated_pixels_has_no_shape(judge):
    grey = np.full((2, SIZE, SIZE, 3), 90, np.uint8)
    assert list(judge.predict(grey)) == [-1, -1]


def test_the_judge_needs_every_shape():
    images, labels = _drawings("train", 8)
    with pytest.raises(ValueError, match="every shape"):
        shape_classes.ShapeJudge(images[labels % 4 != 3], labels[labels % 4 != 3])
