"""Command-line plumbing shared by the apps (`python -m apps.<name>`).

The apps are thin programs: they parse arguments, build from presets, run a
protocol, report and export. What they have in common lives here, once:

* the parser (`app_parser`) and the options every training app takes
  (`add_common_arguments`: `--seed`, `--out`, `--export-dir`, `--no-export`,
  `--resume`, `--cache-dir`, `--synthetic-per-emotion`, `--quiet`,
  `--strategy`);
* `run_main`, the `main()` of every app: bad input (a `ValueError`) and the
  machine's state (an `OSError`: a read-only folder, a full disk) end as one
  `error: ...` line on stderr and exit status 2, never as a traceback;
  `check_output_folder` refuses an unusable output folder before any work;
* the help texts (`DefaultsHelpFormatter`: a default shown only where it
  says something); building a parser imports no TensorFlow;
* checks of argument values that name the option and the value received
  (`check_at_least`, `check_fraction`, `parse_name_list`, and the argparse
  types `positive_int` / `non_negative_int`);
* corpus arguments (`corpus_specs`: `KIND:DIR` parsed with
  `ser_keras.corpora.spec.parse_corpus_spec`, the folder checked) and the
  synthetic default corpora (`synthetic_corpus_spec`);
* distribution (`strategy_from_args`, `check_global_batch`) and, on a
  multi-worker cluster, who writes what (`worker_outputs`): only the chief
  writes the run folder and exports; the other workers write to a private
  folder and export nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import pathlib
import sys
from collections.abc import Callable, Iterable, Sequence

CACHE_HELP = (
    "Waveform and synthetic-corpus cache (default: $SER_KERAS_CACHE or ~/.cache/ser_keras)."
)
RESUME_HELP = "Continue an interrupted run in --out."
REDUCED_NOTE = (
    " -- a REDUCED configuration for a CPU, not the paper's; use --preset paper for that."
)
STRATEGIES = ("none", "mirrored", "multiworker")
"""Names of `--strategy` (`ser_keras.training.distribute.get_strategy` builds them)."""
STRATEGY_HELP = (
    "tf.distribute strategy: none (one device), mirrored (every local GPU, gradients "
    "all-reduced), multiworker (several hosts, each started with its own TF_CONFIG). "
    "--batch-size stays the global batch, split over the replicas."
)


# ----------------------------------------------------------------- parsers


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help, only where it tells something.

    Unlike `argparse.ArgumentDefaultsHelpFormatter`, nothing is appended when
    the default is None or False (an option not given, a flag not set: no
    "(default: None)") or an empty string or list, nor when the help text
    already speaks of its default (it contains "default", in any case).
    """

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            default is None
            or default is False
            or default is argparse.SUPPRESS
            or (isinstance(default, (str, list, tuple)) and not default)
            or "default" in text.lower()
        ):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"
        return text


def app_parser(name: str, description: str, *, show_defaults: bool = True):
    """The argument parser of `python -m apps.<name>`.

    Args:
        name: The app's module name in `apps/`.
        description: What the app does (shown by `--help`).
        show_defaults: Append an option's default to its help text where it
            tells something (`DefaultsHelpFormatter`).

    Returns:
        An `argparse.ArgumentParser`.
    """
    return argparse.ArgumentParser(
        prog=f"python -m apps.{name}",
        description=description,
        formatter_class=DefaultsHelpFormatter if show_defaults else argparse.HelpFormatter,
    )


def add_common_arguments(
    parser: argparse.ArgumentParser,
    *,
    default_out: str | None,
    export_help: str | None = None,
    synthetic_help: str | None = None,
    seed_help: str = "Random seed.",
    resume_help: str = RESUME_HELP,
    cache_help: str = CACHE_HELP,
    strategy: bool = True,
) -> None:
    """Adds the options the training apps share, with the same names and defaults.

    `--seed` (int, default 0), `--out` (when `default_out` is given),
    `--export-dir` (default `saved_models`) and `--no-export` (when
    `export_help` is given), `--resume`, `--cache-dir`,
    `--synthetic-per-emotion` (when `synthetic_help` is given), `--quiet` and
    `--strategy none|mirrored|multiworker` (`add_strategy_argument`). Nothing
    here imports TensorFlow, so that `--help` answers at once.

    Args:
        parser: The app's parser.
        default_out: Default of `--out`, the run's output folder; None adds no
            `--out` (an app with another output option).
        export_help: Help of `--export-dir`: which model is exported there.
            None adds neither `--export-dir` nor `--no-export`.
        synthetic_help: Help of `--synthetic-per-emotion` (the synthetic
            corpora's size); None adds no such option.
        seed_help: Help of `--seed`.
        resume_help: Help of `--resume`.
        cache_help: Help of `--cache-dir`.
        strategy: Whether to add `--strategy`.
    """
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    if default_out is not None:
        parser.add_argument("--out", default=default_out, help="Output folder for results.")
    if export_help is not None:
        parser.add_argument("--export-dir", default="saved_models", help=export_help)
        parser.add_argument("--no-export", action="store_true", help="Skip the SavedModel export.")
    parser.add_argument("--resume", action="store_true", help=resume_help)
    parser.add_argument("--cache-dir", help=cache_help)
    if synthetic_help is not None:
        parser.add_argument("--synthetic-per-emotion", type=int, help=synthetic_help)
    parser.add_argument("--quiet", action="store_true", help="No per-epoch progress lines.")
    if strategy:
        add_strategy_argument(parser)


def add_recipe_arguments(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """Adds the training-recipe options (`ser_keras.training.recipe`) to a parser.

    `--recipe NAME` (a recipe of `RECIPES`; default: the preset's) and one
    option per recipe field that overrides it: `--normalization`,
    `--spec-augment`/`--no-spec-augment`, `--adamw`/`--no-adamw`,
    `--peak-learning-rate`, `--lr-schedule`, `--warmup-epochs`,
    `--weight-decay`, `--label-smoothing`,
    `--recalibrate-batch-norm`/`--no-recalibrate-batch-norm`. Their
    destinations are the `ExperimentConfig` fields of the same names; an
    option not given is None (the recipe's value).

    Args:
        parser: The app's parser.
        default: Default of `--recipe` (None: the preset's recipe).
    """
    from ser_keras.training.recipe import NORMALIZATIONS, RECIPES, SCHEDULES

    group = parser.add_argument_group(
        "training recipe",
        "Training choices beyond the papers' (ser_keras.training.recipe), recorded in "
        "results.json and the export. --recipe picks a set; the options below override it.",
    )
    group.add_argument(
        "--recipe", choices=tuple(RECIPES), default=default,
        help="paper: the papers' training, unchanged; cpu: per-speaker normalisation, "
        "SpecAugment and batch-norm recalibration, chosen on validation speakers "
        "(default: the preset's).",
    )
    group.add_argument(
        "--normalization", choices=NORMALIZATIONS,
        help="Z-normalise every feature band per utterance, corpus or speaker (over its own "
        "frames; no labels). Speaker normalisation needs enrolment audio when served.",
    )
    group.add_argument(
        "--spec-augment", action=argparse.BooleanOptionalAction, default=None,
        help="SpecAugment frequency and time masking of the training batches.",
    )
    group.add_argument(
        "--adamw", action=argparse.BooleanOptionalAction, default=None,
        help="AdamW instead of the paper's optimizer.",
    )
    group.add_argument(
        "--peak-learning-rate", type=float,
        help="Learning rate of AdamW or peak of the cosine schedule (default: the paper "
        "optimizer's).",
    )
    group.add_argument("--lr-schedule", choices=SCHEDULES, help="Learning-rate schedule.")
    group.add_argument(
        "--warmup-epochs", type=int, help="Linear warm-up epochs of the cosine schedule."
    )
    group.add_argument("--weight-decay", type=float, help="AdamW's decoupled weight decay.")
    group.add_argument(
        "--label-smoothing", type=float,
        help="Share of each emotion target spread over the classes (0: none).",
    )
    group.add_argument(
        "--recalibrate-batch-norm", action=argparse.BooleanOptionalAction, default=None,
        help="Re-estimate batch-norm statistics on the training data after training.",
    )


def recipe_from_args(args, default: str = "paper"):
    """The `TrainingRecipe` of `add_recipe_arguments`' options (for programs without a config).

    Raises:
        ValueError: A value the recipe refuses, naming the option
            (`--label-smoothing must be in [0, 1). Received: 1.5`).
    """
    from ser_keras.training.recipe import RECIPE_FIELDS, get_recipe

    overrides = {name: getattr(args, name, None) for name in RECIPE_FIELDS}
    try:
        return get_recipe(getattr(args, "recipe", None) or default).replace(**overrides)
    except ValueError as error:
        from ser_keras.training.recipe import field_of_error

        field = field_of_error(error)
        if field is None:
            raise
        raise ValueError(
            f"--{field.replace('_', '-')} " + str(error).removeprefix(f"`{field}` ")
        ) from None


def add_strategy_argument(parser: argparse.ArgumentParser, default: str = "none") -> None:
    """Adds `--strategy {none,mirrored,multiworker}` to an app's argument parser.

    (Here rather than in `ser_keras.training.distribute`, which imports
    TensorFlow: building a parser must not.)

    Args:
        parser: The app's parser.
        default: The default strategy name.

    Raises:
        ValueError: `default` is not one of `STRATEGIES`.
    """
    if default not in STRATEGIES:
        raise ValueError(f"Unknown default strategy {default!r}; expected one of {STRATEGIES}.")
    parser.add_argument("--strategy", choices=STRATEGIES, default=default, help=STRATEGY_HELP)


def run_main(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None = None,
    *,
    errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Parses `argv` and runs the app; bad input becomes `error: ...` and status 2.

    Argument syntax errors (an unknown option, a value outside `choices`) stop
    in argparse as usual (`SystemExit` with status 2); `--help` exits with 0.

    Args:
        parser: The app's parser.
        run: The app's body, `run(args) -> exit status`.
        argv: The arguments (None: `sys.argv[1:]`).
        errors: More exception types reported the same way as `ValueError`
            and `OSError` (e.g. a tool that failed to start).

    Returns:
        `run`'s exit status, or 2 after printing the error on stderr: a
        `ValueError` (a user's mistake) or an `OSError` (the machine's state:
        an `--out` that is a file, a read-only folder, a full disk), which
        is printed as one line naming the path (`os_error_message`).
    """
    from ser_keras.utils.native_logs import quiet_native_logs

    args = parser.parse_args(argv)
    try:
        # TensorFlow's CUDA start-up lines are noise on a CPU-only machine.
        with quiet_native_logs():
            return run(args)
    except (ValueError, OSError, *errors) as error:
        from ser_keras.experiments.config import ConfigError

        if isinstance(error, ConfigError):
            message = error.as_option()
        elif isinstance(error, OSError):
            message = os_error_message(error)
        else:
            message = str(error)
        print(f"error: {message}", file=sys.stderr)
        return 2


# What the machine's state means for the run, by errno (strerror says the rest).
_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "no permission: choose a folder you may write to",
    errno.EEXIST: "a file is where a folder is needed",
    errno.ENOTDIR: "a file is where a folder is needed",
    errno.EISDIR: "a folder is where a file is needed",
}


def os_error_message(error: OSError) -> str:
    """One line for an `OSError`: the path (`error.filename`), what failed, a hint.

    Args:
        error: The error, e.g. `OSError(errno.ENOSPC, "No space left on
            device", "runs/x/history.csv")`.

    Returns:
        `"<path>: <strerror> (<hint>)"`, e.g. `"runs/x: File exists (a file
        is where a folder is needed)"`; `str(error)` when the error carries
        neither an errno nor a path (a message of its own).
    """
    if error.errno is None and error.filename is None:
        return str(error)
    text = error.strerror or str(error)
    hint = _OS_ERROR_HINTS.get(error.errno)
    if hint:
        text = f"{text} ({hint})"
    if error.filename is None:
        return text
    path = os.fsdecode(error.filename) if isinstance(error.filename, bytes) else error.filename
    if error.filename2 is not None:
        return f"{path} -> {error.filename2}: {text}"
    return f"{path}: {text}"


def check_output_folder(option: str, path) -> pathlib.Path:
    """Checks, before any data is loaded, that an output folder can be written.

    The folder may exist (then it must be a folder one may write in) or not
    (then its nearest existing parent must be a folder one may write in, so
    that it can be created). Call it for `--out`, `--export-dir` and the
    like right after parsing, so that a wrong path fails at once.

    Args:
        option: The option's name, for the message (e.g. `"--out"`).
        path: The folder as given.

    Returns:
        `path` as a `pathlib.Path` (`~` expanded).

    Raises:
        ValueError: The path (or a parent) is an existing file or a broken
            symbolic link, or the folder or its nearest existing parent is
            not writable; the message names the option and the path.
    """
    path = pathlib.Path(path).expanduser()
    existing = path
    while not existing.exists():
        if existing.is_symlink():
            raise ValueError(
                f"{option} {str(path)!r}: {str(existing)!r} is a broken symbolic link."
            )
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        if existing == path:
            raise ValueError(f"{option} must be a folder, but {str(path)!r} is a file.")
        raise ValueError(f"{option} {str(path)!r} cannot be created: {str(existing)!r} is a file.")
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == path:
            reason = "the folder is not writable"
        else:
            reason = f"its nearest existing parent {str(existing)!r} is not writable"
        raise ValueError(f"{option} {str(path)!r} cannot be written: {reason}.")
    return path


# ------------------------------------------------------------------ values


def config_from_args(config_class, args, **fields):
    """Builds an experiment configuration from parsed arguments.

    Every option whose destination is a field of `config_class` and whose
    value is not None overrides the preset (`args.preset`); `--no-export`
    sets `export_dir` to None. A value the configuration refuses raises its
    `ConfigError`, which `run_main` prints with the option's name
    (`error: --epochs must be ...`), before any data is read.

    Args:
        config_class: An `ExperimentConfig` subclass.
        args: The parsed arguments.
        **fields: Fields set explicitly (they win over `args`).

    Returns:
        A validated `config_class` instance.
    """
    names = {field.name for field in dataclasses.fields(config_class)} - {"preset"}
    given = {
        name: getattr(args, name)
        for name in names
        if getattr(args, name, None) is not None
    }
    if getattr(args, "no_export", False):
        given["export_dir"] = None
    given.update(fields)
    return config_class(preset=getattr(args, "preset", "quick"), **given)


def positive_int(text: str) -> int:
    """argparse `type=` for an integer >= 1; the error names the value."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse `type=` for an integer >= 0; the error names the value."""
    return _int_at_least(text, 0, "a non-negative integer")


def _int_at_least(text, minimum, what):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}")
    return value


def check_at_least(checks: Iterable[tuple[str, int | float | None, int | float]]) -> None:
    """Checks lower bounds of numeric options; a None value (not given) passes.

    Args:
        checks: `(option, value, minimum)` triples, e.g.
            `[("--epochs", args.epochs, 1), ("--seed", args.seed, 0)]`.

    Raises:
        ValueError: `"<option> must be at least <minimum>. Received: <value>"`
            for the first value below its minimum.
    """
    for option, value, minimum in checks:
        if value is not None and value < minimum:
            raise ValueError(f"{option} must be at least {minimum}. Received: {value}")


def check_fraction(option: str, value: float | None, low: float = 0.0, high: float = 1.0) -> None:
    """Checks that `value` lies in the open interval (low, high); None passes.

    Raises:
        ValueError: `"<option> must be in (<low>, <high>). Received: <value>"`.
    """
    if value is not None and not low < value < high:
        raise ValueError(f"{option} must be in ({low:g}, {high:g}). Received: {value}")


def parse_name_list(text: str, allowed: Sequence[str], option: str) -> list[str]:
    """Parses a comma-separated list of names, e.g. `--settings stl,mtl`.

    Args:
        text: The argument as typed.
        allowed: The names it may hold.
        option: The option's name, for the error message.

    Returns:
        The names in the order given, each once (a repeated name is kept once).

    Raises:
        ValueError: An unknown name, or no name at all; the message names the
            allowed names and the value received.
    """
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names or any(name not in allowed for name in names):
        raise ValueError(
            f"{option} takes a comma-separated list of names from {', '.join(allowed)}. "
            f"Received: {text!r}"
        )
    return names


def reduced_note(is_reduced: bool) -> str:
    """The warning appended to the configuration line of a reduced (CPU) preset."""
    return REDUCED_NOTE if is_reduced else ""


# ----------------------------------------------------------------- corpora


def corpus_specs(
    texts: Iterable[str] | None,
    option: str,
    *,
    default_kind: str | None = None,
    must_exist: bool = True,
):
    """Parses `KIND:DIR` corpus arguments (`ser_keras.corpora.spec.parse_corpus_spec`).

    Args:
        texts: The arguments as typed (None: none given).
        option: The option's name, for the error messages.
        default_kind: Kind assumed for a bare `DIR`; None requires `KIND:DIR`.
        must_exist: Check that each corpus folder (or manifest file) exists.

    Returns:
        A list of `CorpusSpec`, in the order given.

    Raises:
        ValueError: An unknown or missing kind, or a folder that does not
            exist; the message names the option and the value.
    """
    from ser_keras.corpora.spec import parse_corpus_spec

    specs = []
    for text in texts or ():
        try:
            spec = parse_corpus_spec(text, default_kind=default_kind)
        except ValueError as error:
            raise ValueError(f"{option}: {error}") from None
        if must_exist and not spec.directory.exists():
            raise ValueError(f"{option} {text}: corpus folder not found: {spec.directory}")
        specs.append(spec)
    return specs


def describe_specs(specs, separator: str = ", ") -> str:
    """`kind:DIR` (`folder:LANG:DIR`) of every spec, joined: the run's data description."""
    return separator.join(
        f"{spec.kind}:{spec.language + ':' if spec.language else ''}{spec.directory}"
        for spec in specs
    )


def cache_dir_of(args) -> pathlib.Path:
    """`--cache-dir`, or `ser_keras.data.cache.default_cache_dir()` when not given."""
    from ser_keras.data.cache import default_cache_dir

    return pathlib.Path(args.cache_dir or default_cache_dir())


def synthetic_root(cache_dir) -> pathlib.Path:
    """The folder of the generated default corpora under the cache (announced once)."""
    root = pathlib.Path(cache_dir) / "synthetic"
    print(f"Generating (or reusing) synthetic corpora under {root} ...", flush=True)
    return root


def synthetic_corpus_spec(
    root,
    layout: str,
    *,
    seed: int,
    per_emotion: int | None = None,
    language: str | None = None,
    num_speakers: int = 4,
    per_speaker: int | None = None,
    via_manifest: bool = False,
    progress: bool = True,
):
    """Generates (or reuses) a synthetic eSpeak NG corpus; returns its `CorpusSpec`.

    The folder's name holds every parameter (`savee_seed0_n3`,
    `folder_fr_seed0_s4_n8`), so runs of other sizes never share one.

    Args:
        root: Where the corpora live (`synthetic_root(cache_dir)`).
        layout: "savee", "emodb", "urdu" (emotional speech, `per_emotion`
            utterances per speaker and emotion) or "folder" (unlabelled speech in
            `language`, `num_speakers` speakers x `per_speaker` utterances).
        seed: The generator's seed.
        per_emotion: savee / emodb / urdu size.
        language: folder: ISO 639-1 code.
        num_speakers: folder: speakers (alternating male and female voices).
        per_speaker: folder: utterances per speaker.
        via_manifest: folder: give the corpus through its manifest, which
            records the voices' genders (`folder:LANG:DIR` knows none).
        progress: Show a progress bar on stderr while utterances are
            synthesised (pass `not args.quiet`).

    Returns:
        A `CorpusSpec`.
    """
    from ser_keras.audio import synthetic
    from ser_keras.corpora.spec import CorpusSpec

    root = pathlib.Path(root)
    makers = {
        "savee": synthetic.make_savee_corpus,
        "emodb": synthetic.make_emodb_corpus,
        "urdu": synthetic.make_urdu_corpus,
    }
    if layout in makers:
        if per_emotion is None:
            raise ValueError(f"The {layout} layout needs per_emotion. Received: None")
        directory = root / f"{layout}_seed{seed}_n{per_emotion}"
        makers[layout](directory, seed=seed, per_emotion=per_emotion, progress=progress)
        return CorpusSpec(layout, directory)
    if layout != "folder":
        raise ValueError(
            f"Unknown synthetic layout {layout!r}; expected savee, emodb, urdu or folder."
        )
    if language is None or per_speaker is None:
        raise ValueError(
            "The folder layout needs language and per_speaker. Received: "
            f"language={language!r}, per_speaker={per_speaker!r}"
        )
    directory = root / f"folder_{language}_seed{seed}_s{num_speakers}_n{per_speaker}"
    corpus = synthetic.make_folder_corpus(
        directory,
        language,
        seed=seed,
        num_speakers=num_speakers,
        per_speaker=per_speaker,
        progress=progress,
    )
    if via_manifest:
        return CorpusSpec("manifest", pathlib.Path(corpus.manifest_path))
    return CorpusSpec("folder", directory, language)


def report_skipped(name: str, skipped, warnings=(), limit: int = 20) -> list[dict]:
    """Prints the files left out of a corpus (and its loader's warnings).

    Args:
        name: The corpus, as the messages name it.
        skipped: `SkippedFile`s (of the listing and of the waveform cache).
        warnings: The listing's warnings (`SkippedFile`s of files kept).
        limit: Files printed at most; the rest are counted.

    Returns:
        The skipped files as dicts, for `skipped.json`.
    """
    skipped = list(skipped)
    for warning in warnings:
        print(f"  {name}: warning: {warning.path}: {warning.reason}")
    if skipped:
        print(f"  {name}: skipped {len(skipped)} file(s):")
        for entry in skipped[:limit]:
            print(f"    {entry.path}: {entry.reason}")
        if len(skipped) > limit:
            print(f"    ... and {len(skipped) - limit} more (see skipped.json)")
    return [entry.to_dict() for entry in skipped]


# ------------------------------------------------------------- distribution


def strategy_from_args(args):
    """The strategy of `--strategy`: None for "none" (Keras' plain path), else a
    `tf.distribute.Strategy` (`ser_keras.training.distribute.get_strategy`).

    Call it first in an app's `run`: `MultiWorkerMirroredStrategy` must be
    created before other TensorFlow operations run.

    Raises:
        ValueError: "multiworker" without a valid `TF_CONFIG` (the message
            says what to set).
    """
    from ser_keras.training.distribute import get_strategy

    return None if args.strategy == "none" else get_strategy(args.strategy)


def check_global_batch(batch_size: int, strategy, option: str = "--batch-size") -> None:
    """Checks that the global batch splits evenly over the strategy's replicas.

    Args:
        batch_size: The global batch.
        strategy: The strategy; None (one device) always passes.
        option: The option's name, for the message.

    Raises:
        ValueError: Not a positive multiple of the number of replicas; the
            message names the option, the value and a batch that works.
    """
    if strategy is None:
        return
    from ser_keras.training.distribute import per_replica_batch_size

    try:
        per_replica_batch_size(batch_size, strategy)
    except ValueError as error:
        raise ValueError(f"{option} {batch_size}: {error}") from None


@dataclasses.dataclass(frozen=True)
class WorkerOutputs:
    """Where this process writes, on one device or one worker of a cluster.

    Attributes:
        out_dir: The run folder: `--out` on the chief, a private folder
            (`<out>/workers/<type>_<index>`) on the other workers.
        export_dir: Where to export the SavedModel and rewrite
            `models.config`; None when nothing is exported (`--no-export`, or
            a worker that is not the chief).
        is_chief: Whether this process writes the results.
    """

    out_dir: pathlib.Path
    export_dir: pathlib.Path | None
    is_chief: bool


def worker_outputs(out_dir, strategy, *, export_dir=None) -> WorkerOutputs:
    """Decides this process's output folders (`ser_keras.training.distribute`).

    Under `MultiWorkerMirroredStrategy` every worker runs the same program;
    only the chief may write results, plots and exports to `--out` and
    `--export-dir`.

    Args:
        out_dir: The run folder asked for (`--out`).
        strategy: The strategy (None: one process, the chief).
        export_dir: `--export-dir`, or None when the export is switched off.

    Returns:
        A `WorkerOutputs`; a note is printed on a worker that is not the chief.
    """
    from ser_keras.training.distribute import is_chief, worker_output_dir

    if strategy is None:
        chief, own = True, pathlib.Path(out_dir)
    else:
        chief, own = is_chief(strategy), worker_output_dir(out_dir, strategy)
    if not chief:
        print(
            f"Not the chief worker: this worker writes to {own} and exports nothing; "
            f"the chief writes the results to {out_dir}.",
            flush=True,
        )
    return WorkerOutputs(
        out_dir=own,
        export_dir=pathlib.Path(export_dir) if chief and export_dir is not None else None,
        is_chief=chief,
    )


def export_for_serving(model, export_dir, name: str, **options) -> pathlib.Path:
    """Exports `model` (`export_saved_model`) and rewrites `<export-dir>/models.config`.

    Args:
        model: The model to export.
        export_dir: The export folder (`WorkerOutputs.export_dir`).
        name: The served model's name.
        **options: `export_saved_model`'s keyword arguments (`frontend`,
            `label_names`, `metadata`, ...).

    Returns:
        The exported version's folder.
    """
    from ser_keras.export.saved_model import export_saved_model
    from ser_keras.export.serving import write_models_config

    path = export_saved_model(model, export_dir, name, **options)
    write_models_config(export_dir)
    return path
