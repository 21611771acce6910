"""`python -m train.portraits --model A [--model B ...]`: read the real portraits the app ships (and one from
../shared) with each model as an upload, and say whether each model reads them as a shipped model must.

A rule for shipping a model runs this before any evaluation set is read: a model can gain on validation and
still flip the photo a new user clicks first (docs/results.md: the blocks 3-5 VGG16 read Grace Hopper as a
man, p_female 0.08). The exit status is 1 when a model misreads one, so a run script stops there.
tests/test_shipped_models.py holds the shipped models to the same expectations (`reads_as_expected`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from model.fast import PRECISIONS
from model.hub import ModelLoadError, load_model
from model.paths import PROJECT_ROOT, SHARED_DIR
from train.evaluate import app_predictions

FEMALE_ABOVE, MALE_BELOW = 0.6, 0.5  # a woman read firmly female; a man read male


@dataclass(frozen=True)
class Portrait:
    path: Path
    who: str
    female: bool
    min_age: float
    max_age: float = 100.0


PORTRAITS = (
    Portrait(PROJECT_ROOT / "assets" / "examples" / "astronaut.jpg", "Eileen Collins, NASA portrait", True, 25, 65),
    Portrait(PROJECT_ROOT / "assets" / "examples" / "grace_hopper.jpg", "Grace Hopper, past 70", True, 55),
    Portrait(SHARED_DIR / "data" / "wild-faces" / "Tom_Cruise_avp_2014_4.jpg", "Tom Cruise, 51", False, 30, 70),
)


def reads_as_expected(portrait: Portrait, p_female: float, age: float, age_low: float, age_high: float) -> bool:
    """The gender firmly right, the age in the portrait's range, and inside its own 80% interval."""
    gender_right = p_female > FEMALE_ABOVE if portrait.female else p_female < MALE_BELOW
    return gender_right and portrait.min_age <= age <= portrait.max_age and age_low <= age <= age_high


def read_portraits(model, precision: str | None = None) -> list[dict]:
    """Each portrait's main face as the app reads it (train.evaluate.app_predictions): p_female, age, its
    interval, and whether that is as expected (a portrait where no face is found is not)."""
    missing = [str(p.path) for p in PORTRAITS if not p.path.is_file()]
    if missing:
        raise FileNotFoundError(f"portraits missing: {', '.join(missing)} (../shared beside the project?)")
    out, _ = app_predictions(model, PORTRAITS, detect=True, precision=precision)
    readings = []
    for i, portrait in enumerate(PORTRAITS):
        reading = {k: float(out[k][i]) for k in ("p_female", "age", "age_low", "age_high")}
        reading["ok"] = bool(out["found"][i]) and reads_as_expected(portrait, **reading)
        readings.append({"who": portrait.who, **reading})
    return readings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.portraits", description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, help="a model spec or folder (repeatable)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="the fast path's precision (default: as the app, $FACE_PRECISION or auto)")
    args = parser.parse_args(argv)
    misread = []
    for spec in args.model:
        try:
            readings = read_portraits(load_model(spec), args.precision)
        except (ModelLoadError, FileNotFoundError) as error:
            print(f"error: {error}")
            return 2
        for r in readings:
            verdict = "as expected" if r["ok"] else "MISREAD"
            print(f"{spec:40s} {r['who']:30s} p_female {r['p_female']:.2f}  age {r['age']:5.1f} "
                  f"({r['age_low']:.0f}-{r['age_high']:.0f})  {verdict}")
            if not r["ok"]:
                misread.append(f"{spec}: {r['who']}")
    if misread:
        print(f"misread: {'; '.join(misread)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
