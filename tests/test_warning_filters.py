"""A DeprecationWarning raised from our own code fails the tests (CONTRIBUTING), for every
package of ours: the filters in pyproject.toml name each package the import contract names."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import pytest

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
OUR_PACKAGES = PYPROJECT["tool"]["importlinter"]["root_packages"]


def test_every_package_of_ours_has_its_deprecation_filter():
    filters = PYPROJECT["tool"]["pytest"]["ini_options"]["filterwarnings"]
    errors = {f.split(":")[3] for f in filters if f.startswith("error::DeprecationWarning:")}
    assert errors == {*OUR_PACKAGES, "tests"}
    assert not [f for f in filters if f.startswith("ignore") and "Deprecation" in f]


@pytest.mark.parametrize("module", [f"{package}.some_module" for package in OUR_PACKAGES])
def test_a_deprecation_warned_from_our_module_is_an_error(module):
    with pytest.raises(DeprecationWarning, match="old call"):
        warnings.warn_explicit("old call", DeprecationWarning, "x.py", 1, module=module)


def test_a_third_party_deprecation_is_not_an_error():
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn_explicit("old call", DeprecationWarning, "x.py", 1, module="pandas.core")
    assert [w.category for w in caught] == [DeprecationWarning]
