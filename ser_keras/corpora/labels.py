"""Emotion label vocabulary and label maps (published label -> task class).

Loaders write each corpus's labels spelled out in a canonical lower-case
vocabulary (`canonical_label`). A `LabelMap` turns those labels into class
indices for one task; a label the map does not cover, and an unlabelled
utterance, becomes -1 (the "missing label" of the multi-task losses and of the
metrics) and is counted by `LabelMap.unmapped_counts`, never dropped silently.

Maps (`get_label_map(name)`):
- `savee7`: SAVEE's seven emotions (also EMOVO's seven, joy = happiness).
- `common6`: the six emotions SAVEE shares with EMO-DB; EMO-DB boredom and
  SAVEE surprise become -1 (Fu et al. 2020, paper 004, Section 4.3).
- `emodb7`: EMO-DB's seven emotions.
- `four_class`: neutral, happiness, sadness, anger, with IEMOCAP "excited"
  merged into happiness (the 5531-utterance IEMOCAP set of papers 000, 002,
  003; Kim et al. 2017, paper 001).
- `binary_valence`: negative/positive per Latif et al. 2020 (paper 000)
  Table 1, the union over its corpora.
- `binary_valence_iemocap`: Table 1's IEMOCAP row only (anger, sadness ->
  negative; neutral, happiness, excited -> positive), so that IEMOCAP's few
  fear/surprise/disgust utterances stay out as in the paper.
- `ravdess8`: RAVDESS's eight emotions in the corpus's code order.
- `turev4`: TurEV-DB's four emotions (anger, calm, happiness, sadness).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

# The canonical vocabulary where meaning is shared across corpora.
CANONICAL_LABELS = (
    "anger",
    "boredom",
    "calm",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
)

# Spellings with the same meaning as a canonical label.
LABEL_SYNONYMS = {
    "angry": "anger",
    "bored": "boredom",
    "disgusted": "disgust",
    "fearful": "fear",
    "happy": "happiness",
    "joy": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
}

# Key under which `unmapped_counts` counts unlabelled utterances (label None).
UNLABELLED = "<unlabelled>"


def canonical_label(label: str | None) -> str | None:
    """Spells a published emotion label in the canonical lower-case vocabulary.

    `"Angry"` -> `"anger"`, `"joy"` -> `"happiness"`; labels outside the
    shared vocabulary (IEMOCAP's `"frustration"`, `"excited"`) are kept, in
    lower case. Empty text and `None` give `None` (unlabelled).
    """
    if label is None:
        return None
    text = " ".join(str(label).split()).lower()
    if not text:
        return None
    return LABEL_SYNONYMS.get(text, text)


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Maps published labels to the classes of one classification task.

    A label equal to a class name maps to that class; `mapping` adds the
    other labels that map to a class (e.g. `{"excited": "happiness"}`).
    Every other label, and `None` (unlabelled), maps to -1.

    Args:
        name: Name of the map (e.g. `"common6"`).
        classes: Class names in index order.
        mapping: Published label -> class name, for labels that are not
            class names themselves.
    """

    name: str
    classes: tuple[str, ...]
    mapping: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        classes = tuple(self.classes)
        if not classes or not all(isinstance(item, str) and item for item in classes):
            raise ValueError(
                f"`classes` must be a non-empty sequence of names. Received: classes={classes!r}"
            )
        if len(set(classes)) != len(classes):
            raise ValueError(f"`classes` must not repeat a name. Received: classes={classes!r}")
        unknown = {label: target for label, target in self.mapping.items() if target not in classes}
        if unknown:
            raise ValueError(
                f"`mapping` must map to names in `classes` {classes}. Received: {unknown!r}"
            )
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "mapping", dict(self.mapping))

    def __hash__(self):
        return hash((self.name, self.classes, tuple(sorted(self.mapping.items()))))

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.classes)

    def index(self, label: str | None) -> int:
        """Class index of `label`, or -1 when it is `None` or not covered."""
        if label is None:
            return -1
        target = self.mapping.get(label, label)
        try:
            return self.classes.index(target)
        except ValueError:
            return -1

    def encode(self, utterances: Iterable) -> np.ndarray:
        """Class indices (int32, -1 = unmapped/unlabelled) of utterances.

        Args:
            utterances: `Utterance` records, or labels (`str` or `None`).
        """
        return np.asarray([self.index(_label_of(item)) for item in utterances], dtype=np.int32)

    def unmapped_counts(self, utterances: Iterable) -> dict[str, int]:
        """How many utterances of each label map to -1.

        Unlabelled utterances are counted under `UNLABELLED`. The dict is
        sorted by label; empty when every utterance maps to a class.
        """
        counts = Counter(
            UNLABELLED if label is None else label
            for label in map(_label_of, utterances)
            if self.index(label) < 0
        )
        return dict(sorted(counts.items()))


def _label_of(item):
    return item if item is None or isinstance(item, str) else item.label


_SAVEE7 = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")

LABEL_MAPS = {
    label_map.name: label_map
    for label_map in (
        LabelMap("savee7", _SAVEE7),
        LabelMap("common6", ("anger", "disgust", "fear", "happiness", "neutral", "sadness")),
        LabelMap(
            "emodb7", ("anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness")
        ),
        # IEMOCAP "excited" merged into happiness: the 5531-utterance set
        # (1103 angry, 1708 neutral, 1084 sad, 1636 happy + excited).
        LabelMap(
            "four_class", ("neutral", "happiness", "sadness", "anger"), {"excited": "happiness"}
        ),
        # Paper 000 Table 1: negative = angry, sad, fear, disgust, boredom;
        # positive = neutral, happy/joy, surprise. "excited" is positive because
        # Table 1's 5531 IEMOCAP utterances are the four-class set with excited
        # merged into happy. Labels outside Table 1 (RAVDESS/TurEV "calm",
        # IEMOCAP "frustration", "other") stay -1.
        LabelMap(
            "binary_valence",
            ("negative", "positive"),
            {
                "anger": "negative",
                "sadness": "negative",
                "fear": "negative",
                "disgust": "negative",
                "boredom": "negative",
                "neutral": "positive",
                "happiness": "positive",
                "excited": "positive",
                "surprise": "positive",
            },
        ),
        LabelMap(
            "binary_valence_iemocap",
            ("negative", "positive"),
            {
                "anger": "negative",
                "sadness": "negative",
                "neutral": "positive",
                "happiness": "positive",
                "excited": "positive",
            },
        ),
        # RAVDESS emotion codes 01..08 in order.
        LabelMap(
            "ravdess8",
            ("neutral", "calm", "happiness", "sadness", "anger", "fear", "disgust", "surprise"),
        ),
        LabelMap("turev4", ("anger", "calm", "happiness", "sadness")),
    )
}

LABEL_MAP_NAMES = tuple(LABEL_MAPS)

# The label map of each labelled corpus kind (the loaders' canonical labels ->
# that corpus's own classes): what an experiment uses unless told otherwise.
# IEMOCAP merges excited into happy (its usual 4-class use, paper 003 Section 3).
DEFAULT_LABEL_MAPS = {
    "savee": "savee7",
    "emodb": "emodb7",
    "emovo": "savee7",
    "iemocap": "four_class",
    "urdu": "four_class",
    "ravdess": "ravdess8",
    "turev": "turev4",
}


def get_label_map(name: str) -> LabelMap:
    """Returns the label map called `name` (one of `LABEL_MAP_NAMES`).

    Raises:
        ValueError: When `name` is not a known map, naming it.
    """
    try:
        return LABEL_MAPS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown label map. Expected one of {', '.join(LABEL_MAP_NAMES)}. Received: {name!r}"
        ) from None


def default_label_map(kind: str) -> LabelMap:
    """The label map of a labelled corpus kind (`DEFAULT_LABEL_MAPS`).

    Args:
        kind: A corpus kind, e.g. "emodb".

    Raises:
        ValueError: A kind without emotion labels of its own (manifest,
            folder, librispeech) or an unknown kind, naming it.
    """
    if kind not in DEFAULT_LABEL_MAPS:
        raise ValueError(
            f"No default label map for corpus kind {kind!r}; kinds with one: "
            f"{', '.join(DEFAULT_LABEL_MAPS)}. Give a label map by name."
        )
    return get_label_map(DEFAULT_LABEL_MAPS[kind])
