"""Univariate series to forecast: an offline registry of the data sets statsmodels and aeon ship, or a CSV file.

Registry series (lower-case names) and how each becomes one regular series:

- ``sunspots``  yearly sunspot activity 1700-2008 (SUNACTIVITY), season 11 (the solar cycle);
- ``co2``       Mauna Loa CO2, weekly with gaps: monthly means, and the 5 of 526 months without
  any weekly reading filled by linear interpolation between their neighbours; season 12;
- ``elnino``    monthly sea-surface temperature 1950-2010, the 12 month columns read row by
  row into one monthly series; season 12;
- ``nile``      yearly Nile volume at Aswan 1871-1970; no season;
- ``macrodata`` US real GDP (realgdp), quarterly 1959-2009; season 4;
- ``airline``   monthly international airline passengers 1949-1960 (Box & Jenkins), from aeon's
  ``load_airline``; season 12;
- ``lynx``      yearly Canadian lynx trappings 1821-1934, from aeon's ``load_lynx``; season 10 (the
  population cycle of about ten years);
- ``shampoo``   monthly shampoo sales over three years (Makridakis et al.), from aeon's
  ``load_shampoo_sales``; season 12.

The three from aeon are read from the files inside its wheel (no download); aeon 1.6 marks
lynx and shampoo sales as leaving in 1.7, which the ``timeseries`` extra pins below.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SelfSupError


@dataclass(frozen=True)
class Series:
    name: str
    values: np.ndarray                 # the target, float64 [N]
    extras: np.ndarray                 # further input channels for the networks, float64 [C, N]
    extra_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegistryEntry:
    load: Callable[[], np.ndarray]
    column: str
    season: int | None
    description: str


def _datasets():
    import statsmodels.api as sm
    return sm.datasets


def _sunspots() -> np.ndarray:
    return _datasets().sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(float)


def _co2() -> np.ndarray:
    weekly = _datasets().co2.load_pandas().data["co2"]
    return weekly.resample("MS").mean().interpolate(method="linear").to_numpy(float)


def _elnino() -> np.ndarray:
    table = _datasets().elnino.load_pandas().data.drop(columns="YEAR")
    return table.to_numpy(float).ravel()


def _nile() -> np.ndarray:
    return _datasets().nile.load_pandas().data["volume"].to_numpy(float)


def _macrodata() -> np.ndarray:
    return _datasets().macrodata.load_pandas().data["realgdp"].to_numpy(float)


def _aeon_series(loader: str) -> Callable[[], np.ndarray]:
    """The series aeon's ``loader`` returns, as float64."""
    def load() -> np.ndarray:
        import warnings

        import aeon.datasets

        with warnings.catch_warnings():  # aeon 1.6 marks lynx and shampoo sales as leaving in 1.7 (pinned below it)
            warnings.simplefilter("ignore", FutureWarning)
            return np.asarray(getattr(aeon.datasets, loader)(), dtype=float).ravel()
    return load


SERIES: dict[str, RegistryEntry] = {
    "sunspots": RegistryEntry(_sunspots, "SUNACTIVITY", 11, "yearly sunspot activity 1700-2008 (309 values)"),
    "co2": RegistryEntry(_co2, "co2", 12, "Mauna Loa CO2, monthly means of weekly readings 1958-2001 (526 values)"),
    "elnino": RegistryEntry(_elnino, "temperature", 12,
                            "monthly El Nino sea-surface temperature 1950-2010 (732 values)"),
    "nile": RegistryEntry(_nile, "volume", None, "yearly Nile volume 1871-1970 (100 values)"),
    "macrodata": RegistryEntry(_macrodata, "realgdp", 4, "quarterly US real GDP 1959-2009 (203 values)"),
    "airline": RegistryEntry(_aeon_series("load_airline"), "passengers", 12,
                             "monthly airline passengers 1949-1960 (144 values)"),
    "lynx": RegistryEntry(_aeon_series("load_lynx"), "trappings", 10, "yearly Canadian lynx trappings 1821-1934 (114 values)"),
    "shampoo": RegistryEntry(_aeon_series("load_shampoo_sales"), "sales", 12,
                             "monthly shampoo sales over three years (36 values)"),
}


def registry_entry(name: str) -> RegistryEntry:
    if name not in SERIES:
        raise SelfSupError(f"unknown series '{name}'; choose one of: {', '.join(SERIES)} (or --csv FILE --column C)")
    return SERIES[name]


def load_registry_series(name: str) -> Series:
    values = registry_entry(name).load()
    return Series(name, values, np.zeros((0, len(values))))


def _read_csv(path: Path):
    import pandas as pd

    if not path.is_file():
        raise SelfSupError(f"CSV file {path} does not exist")
    try:
        return pd.read_csv(path, skip_blank_lines=False)  # a blank line is a missing value, lines keep their numbers
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = f"{type(exc).__name__}: {str(exc).strip()[:120]}"
        raise SelfSupError(f"{path} is not a readable CSV file ({reason})") from exc


def _lines(index) -> str:
    """File line numbers of data rows (the header is line 1), the first five."""
    shown = ", ".join(str(i + 2) for i in list(index)[:5])
    return shown + (", ..." if len(index) > 5 else "")


def _sorted_by_date(frame, path: Path, column: str):
    import pandas as pd

    dates = pd.to_datetime(frame[column], errors="coerce")
    bad = dates.index[dates.isna()]
    if len(bad):
        raise SelfSupError(f"{path}: {len(bad)} value(s) of date column '{column}' are not dates (lines {_lines(bad)})")
    return frame.assign(**{column: dates}).sort_values(column, kind="stable")


def load_csv_series(path: str | Path, columns: list[str], date_column: str | None = None,
                    interpolate: bool = False) -> Series:
    """The first of ``columns`` is the target, the others extra input channels; rows sorted by
    ``date_column`` when given.  Missing or non-numeric values are an error naming their lines,
    unless ``interpolate`` fills them linearly between neighbouring rows (at either end: the
    nearest value)."""
    import pandas as pd

    path = Path(path)
    frame = _read_csv(path)
    absent = [c for c in [*columns, date_column] if c is not None and c not in frame.columns]
    if absent:
        raise SelfSupError(f"{path} has no column {', '.join(map(repr, absent))}; its columns are: "
                           + ", ".join(map(str, frame.columns)))
    if date_column:
        frame = _sorted_by_date(frame, path, date_column)
    numbers = frame[columns].apply(pd.to_numeric, errors="coerce")
    for column in columns:
        bad = numbers.index[numbers[column].isna()]
        if len(bad) and not interpolate:
            raise SelfSupError(f"{path}: column '{column}' has {len(bad)} missing or non-numeric value(s) (lines "
                               f"{_lines(bad)}); fix them, or pass --interpolate to fill them linearly")
        if len(bad) == len(numbers):
            raise SelfSupError(f"{path}: column '{column}' has no numeric value")
    if interpolate:
        numbers = numbers.interpolate(method="linear", limit_direction="both")
    table = numbers.to_numpy(float).T
    return Series(str(path), table[0], table[1:], tuple(columns[1:]))
