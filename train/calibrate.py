"""Calibration fitted on the validation split after training: temperature scaling (Guo et al., 2017) of the
gender logit and of the age distribution, the gender offset that evens out errors between women and men, and
the age warp that undoes ages pulled to the middle."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from model.age import AGE_BINS, INTERVAL, MAX_AGE, age_interval, identity_warp, mean_age, warp_ages
from train.losses import interval_nll
from train.metrics import AgeLabels


def minimise_over_temperature(nll) -> float:
    """The T > 0 that minimises nll(T) (a scalar tensor), found by LBFGS on log T so T stays positive."""
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = nll(log_t.exp())
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the validation NLL of sigmoid(logit / T). One parameter, so it cannot
    change which gender is predicted, only how confident the probability is."""
    logits, labels = logits.detach().float(), labels.float()
    return minimise_over_temperature(lambda t: F.binary_cross_entropy_with_logits(logits / t, labels))


def fit_age_temperature(age_logits: torch.Tensor, age: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> float:
    """The T > 0 that minimises the validation NLL of softmax(age_logits / T): -log P(age) for exact ages,
    -log P(low <= age <= high) for range labels (age < 0), each face counted once. It sharpens or widens the
    distribution and so the interval shown; the most likely age stays the same."""
    age_logits = age_logits.detach().float()
    exact = age >= 0
    top = age_logits.shape[1] - 1

    def nll(t):
        scaled = age_logits / t
        terms = [-scaled[exact].log_softmax(-1).gather(1, age[exact].clamp(max=top).unsqueeze(1)).squeeze(1),
                 interval_nll(scaled[~exact], low[~exact], high[~exact])]
        return torch.cat(terms).mean()

    return minimise_over_temperature(nll)


MIN_EXACT_FOR_COVERAGE = 200  # validation faces with exact ages needed to fit the temperature to coverage


def fit_age_temperature_for_coverage(age_logits: torch.Tensor, age: torch.Tensor, warp_at,
                                     mass: float = INTERVAL) -> float | None:
    """The T > 0 at which the central `mass` interval the app shows (softmax(age_logits / T), moved by the age
    warp warp_at(T) fitted at that T) covers `mass` of the validation faces with exact ages; None with fewer
    than MIN_EXACT_FOR_COVERAGE of them (then the likelihood fit stays).

    Why: fitted by likelihood with FairFace's range labels (annotators' guesses of a decade) the distribution
    has to be wide enough to cover their guessing too, and the warp widens it again where it stretches ages:
    the VGG16 trained on both sources showed an "80%" interval that held 88.4% of UTKFace test ages. What the
    app promises is the interval's coverage, so that is what the one parameter is fitted to. Measured on
    validation halves (fit on one, score the other): 78-82% covered, age MAE and the band errors unchanged
    or smaller, for both models."""
    exact = age >= 0
    if int(exact.sum()) < MIN_EXACT_FOR_COVERAGE:
        return None
    logits, ages = age_logits.detach().float()[exact], age[exact]

    def coverage(t: float) -> float:
        low, high = age_interval(warp_ages((logits / t).softmax(-1), warp_at(t)), mass)
        return float(((ages >= low) & (ages <= high)).float().mean())

    return bisect_for_coverage(coverage, mass, 0.05, 20.0, steps=30)


def bisect_for_coverage(coverage_at, mass: float, low: float, high: float, steps: int) -> float:
    """The x in [low, high] where coverage_at(x), which grows with x (a temperature or its scale), reaches
    `mass`: bisection on log x."""
    for _ in range(steps):
        mid = (low * high) ** 0.5
        low, high = (mid, high) if coverage_at(mid) < mass else (low, mid)
    return (low * high) ** 0.5


def fit_age_temperature_for_coverage_or_likelihood(age_logits: torch.Tensor, labels: dict, warp_at
                                                   ) -> tuple[float, str]:
    """(the age temperature, "coverage" | "likelihood"): fitted to the 80% interval's coverage, or by likelihood
    where there are too few exact ages. labels: {"age", "age_low", "age_high"} tensors."""
    temperature = fit_age_temperature_for_coverage(age_logits, labels["age"].cpu(), warp_at)
    if temperature is not None:
        return temperature, "coverage"
    return fit_age_temperature(age_logits, labels["age"].cpu(), labels["age_low"].cpu(),
                               labels["age_high"].cpu()), "likelihood"


# --------------------------------------------------------------------------------- women and men misread alike

MIN_GROUP_FOR_OFFSET = 50  # a source enters the gender offset's fit only with this many women and men
OFFSET_GRID = np.round(np.arange(-1.0, 1.0001, 0.01), 2)  # logit units: 1.0 moves p = 0.5 to 0.73


def gender_gaps(scaled_logit: np.ndarray, gender: np.ndarray, sources, offset: float) -> dict[str, float]:
    """{source: accuracy on women - accuracy on men} when p_female = sigmoid(scaled_logit + offset)."""
    female_said = scaled_logit + offset > 0
    sources = np.asarray(sources)
    gaps = {}
    for source in np.unique(sources):
        women, men = (sources == source) & (gender == 1), (sources == source) & (gender == 0)
        if min(women.sum(), men.sum()) >= MIN_GROUP_FOR_OFFSET:
            gaps[str(source)] = float(female_said[women].mean() - (~female_said[men]).mean())
    return gaps


def fit_gender_offset(scaled_logit: np.ndarray, gender: np.ndarray, sources) -> float:
    """The offset b added to the temperature-scaled gender logit that makes the largest gap, over sources,
    between accuracy on women and on men smallest (ties: the b nearest 0).

    Why: temperature scaling fits the probability's confidence but keeps the 50% line where training left it,
    and there the scratch CNN misread FairFace's women 5 points more often than its men (validation). Moving
    the line is a post-processing for equal error rates (Hardt et al., 2016, "Equality of Opportunity"); it
    leaves what the model saw alone and, measured on validation, changes the log loss by ~0.001. Every
    source counts: one offset fits UTKFace (no gap) and FairFace (a gap) as evenly as one line can. 0 when no
    source has MIN_GROUP_FOR_OFFSET women and men (a smoke run)."""
    scaled_logit, gender = np.asarray(scaled_logit, dtype=float), np.asarray(gender)
    worst = [max(map(abs, gender_gaps(scaled_logit, gender, sources, b).values()), default=None) for b in OFFSET_GRID]
    if worst[0] is None:
        return 0.0
    return float(min(zip(worst, np.abs(OFFSET_GRID), OFFSET_GRID))[2])


# ------------------------------------------------------------------------------------- ages pulled to the middle

MIN_GROUP_FOR_WARP = 20  # a band of one source enters the fit only with this many faces
# True ages where the fitted pull may bend. Chosen on the validation split of the scratch CNN, fitting on one
# half and scoring the other (train.fit_age_warp's held-out check, which then took the knots as an option):
# a line (0, 100) left FairFace 20-29 at +3.7 y; these knots left every band within +-2.6 y.
WARP_KNOTS = (0, 20, 50, MAX_AGE)


def warp_inputs(records) -> tuple[np.ndarray, list[str], list[str]]:
    """Per face: the age the warp should reach (exact age or range middle; NaN for open-ended ranges such as
    FairFace's "more than 70", whose middle is a convention, not an age), its age band and its source."""
    labels = AgeLabels(*(np.array([getattr(r, name) for r in records]) for name in ("age", "age_low", "age_high")))
    target = labels.target()
    target[labels.ranged & (labels.high >= MAX_AGE)] = np.nan
    return target, labels.bands(), [r.source for r in records]


def fit_age_warp(probs: torch.Tensor, target: np.ndarray, bands: list[str], sources: list[str],
                 knots=WARP_KNOTS) -> tuple[torch.Tensor, dict]:
    """The age warp undoing the pull to the middle: the mean predicted age of each age band is fitted as a
    piecewise-linear function f of the band's mean true age (knots at `knots` years, linear past the ends),
    and the warp is its inverse, predicted age k -> f^-1(k).

    Why: a model unsure of a face's age answers with a distribution leaning to the ages it saw most, so the
    young come out too old and the old too young (regression to the mean, measured per band by train.evaluate).
    The brain-age literature corrects the same shrinkage after training (Smith et al. 2019, Cole et al.
    2018): fit how predictions depend on the true age on held-out data and invert it. A few knots, not one
    per band: bands overlap in what the model predicts, and a map through every band's mean bends steeply
    between them (tried here: worse on held-out faces). Fitted on validation only; every band counts once,
    and within a band every source with MIN_GROUP_FOR_WARP faces counts once (UTKFace's exact ages and
    FairFace's ranges disagree on how old a band looks).

    probs: [N, AGE_BINS] validation distributions after the age temperature; target: each face's true age (exact
    age or range middle; NaN = not used, e.g. open-ended ranges); bands, sources: each face's age band and source.
    Returns (warp [AGE_BINS], years, clamped to 0..MAX_AGE; {"bands", "true", "predicted": the band means fitted,
    "knots", "predicted_at_knots": f at the knots}). ValueError when fewer than two bands have enough faces or
    f is nearly flat somewhere (inverting it would multiply the model's noise).
    """
    target = np.asarray(target, dtype=float)
    bands, sources = np.asarray(bands), np.asarray(sources)
    predicted_age = mean_age(probs.detach().float()).numpy()
    names, true, predicted = [], [], []
    for band in dict.fromkeys(bands[np.isfinite(target)]):
        masks = [(bands == band) & (sources == s) & np.isfinite(target) for s in np.unique(sources)]
        masks = [m for m in masks if m.sum() >= MIN_GROUP_FOR_WARP]
        if masks:
            names.append(str(band))
            true.append(np.mean([target[m].mean() for m in masks]))
            predicted.append(np.mean([predicted_age[m].mean() for m in masks]))
    if len(names) < 2:
        raise ValueError("fitting an age warp needs validation faces in at least two age bands")
    at_knots = piecewise_linear_fit(np.array(true), np.array(predicted), np.asarray(knots, dtype=float))
    slopes = np.diff(at_knots) / np.diff(knots)
    if slopes.min() <= 0.2:  # ages that barely follow the truth somewhere: inverting would multiply the noise
        raise ValueError(f"predicted ages follow true ages with slope {slopes.min():.2f}: too flat to invert")
    warp = inverse_piecewise_linear(np.arange(AGE_BINS, dtype=float), np.asarray(knots, dtype=float), at_knots)
    order = np.argsort(true)
    return torch.tensor(np.clip(warp, 0, MAX_AGE), dtype=torch.float32), {
        "bands": [names[i] for i in order], "true": np.round(np.array(true)[order], 2).tolist(),
        "predicted": np.round(np.array(predicted)[order], 2).tolist(), "knots": list(knots),
        "predicted_at_knots": np.round(at_knots, 3).tolist()}


def warp_or_identity(probs: torch.Tensor, inputs: tuple) -> tuple[torch.Tensor, dict | None]:
    """fit_age_warp on validation distributions `probs` of the faces whose warp_inputs are `inputs`; the
    identity (and None) where the split is too small for it (a smoke run)."""
    try:
        return fit_age_warp(probs, *inputs)
    except ValueError:
        return identity_warp(), None


def fit_age_calibration(age_logits: torch.Tensor, age: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                        records) -> dict:
    """The age distribution's calibration on validation: the temperature that makes the 80% interval cover 80%
    of exact ages (the likelihood fit where there are too few of them), then the age warp at that temperature.
    Returns {"temperature", "fitted_to": "coverage" | "likelihood", "warp", "warp_knots" (None: no warp)}."""
    age_logits = age_logits.detach().float().cpu()
    inputs = warp_inputs(records)  # once: the bisection fits a warp at each of its 30 steps

    def warp_at(t: float) -> torch.Tensor:
        return warp_or_identity((age_logits / t).softmax(-1), inputs)[0]

    temperature, fitted_to = fit_age_temperature_for_coverage_or_likelihood(
        age_logits, {"age": age, "age_low": low, "age_high": high}, warp_at)
    warp, knots = warp_or_identity((age_logits / temperature).softmax(-1), inputs)
    return {"temperature": temperature, "fitted_to": fitted_to, "warp": warp, "warp_knots": knots}


def piecewise_linear_fit(x: np.ndarray, y: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Least-squares values at `knots` of the piecewise-linear function (linear beyond the ends) through (x, y)."""
    basis = np.stack([np.interp(x, knots, np.eye(len(knots))[j]) for j in range(len(knots))], axis=1)
    for outside, a, b in ((x < knots[0], 0, 1), (x > knots[-1], -2, -1)):  # extended linearly past the ends
        t = (x[outside] - knots[a]) / (knots[b] - knots[a])
        basis[outside] = 0
        basis[outside, a], basis[outside, b] = 1 - t, t
    return np.linalg.lstsq(basis, y, rcond=None)[0]


def inverse_piecewise_linear(values: np.ndarray, knots: np.ndarray, at_knots: np.ndarray) -> np.ndarray:
    """x such that f(x) = value, for the increasing piecewise-linear f through (knots, at_knots), extended
    linearly past its ends."""
    x = np.interp(values, at_knots, knots)
    low, high = values < at_knots[0], values > at_knots[-1]
    x[low] = knots[0] + (values[low] - at_knots[0]) * (knots[1] - knots[0]) / (at_knots[1] - at_knots[0])
    x[high] = knots[-1] + (values[high] - at_knots[-1]) * (knots[-1] - knots[-2]) / (at_knots[-1] - at_knots[-2])
    return x


# ------------------------------------------------------------------------------------------- all of it at once

def fit_calibration(gender_logit: torch.Tensor, age_logits: torch.Tensor, labels: dict, records) -> dict:
    """Every calibration buffer of a model (model/nets.py CALIBRATION_BUFFERS) fitted on its raw validation
    outputs: the gender temperature, then the offset on the scaled logit, the age temperature and warp.
    labels: {"gender", "age", "age_low", "age_high"} tensors of those faces; records: their records (sources,
    bands). What a training run does after its last epoch (train.train.finish) and train.recalibrate later."""
    gender_logit, gender = gender_logit.detach().float().cpu(), labels["gender"].cpu()
    temperature = fit_temperature(gender_logit, gender)
    age = fit_age_calibration(age_logits, labels["age"], labels["age_low"], labels["age_high"], records)
    offset = fit_gender_offset((gender_logit / temperature).numpy(), gender.numpy(), [r.source for r in records])
    return {"gender_temperature": temperature, "gender_offset": offset, "age_temperature": age["temperature"],
            "age_warp": age["warp"], "age_temperature_fitted_to": age["fitted_to"], "age_warp_knots": age["warp_knots"]}


def fit_temperatures(gender_logit: torch.Tensor, age_logits: torch.Tensor, labels: dict, keep: dict) -> dict:
    """Only the two temperatures, on raw validation outputs: the gender temperature by likelihood, the age
    temperature to the 80% interval's coverage with `keep`'s age warp; the offset and the warp stay `keep`'s (a
    model's own, calibration_of). For a model whose outputs are already corrected, e.g. an ensemble of calibrated
    members (model/ensemble.py), where refitting the warp on top moved validation ages further from the truth."""
    gender_temperature = fit_temperature(gender_logit.detach().float().cpu(), labels["gender"].cpu())
    age_temperature, fitted_to = fit_age_temperature_for_coverage_or_likelihood(
        age_logits.detach().float().cpu(), labels, lambda t: keep["age_warp"])
    return {"gender_temperature": gender_temperature, "gender_offset": keep["gender_offset"],
            "age_temperature": age_temperature, "age_warp": keep["age_warp"], "age_temperature_fitted_to": fitted_to,
            "age_warp_knots": None}


def calibration_of(model) -> dict:
    """The calibration a model carries, in fit_calibration's keys (a copy: setting another leaves it alone)."""
    return {"gender_temperature": float(model.gender_temperature), "gender_offset": float(model.gender_offset),
            "age_temperature": float(model.age_temperature), "age_warp": model.age_warp.detach().clone()}


def set_calibration(model, fitted: dict) -> None:
    """Write fit_calibration's (or calibration_of's) values into the model's buffers."""
    model.gender_temperature.fill_(fitted["gender_temperature"])
    model.gender_offset.fill_(fitted["gender_offset"])
    model.age_temperature.fill_(fitted["age_temperature"])
    model.age_warp.copy_(fitted["age_warp"])
