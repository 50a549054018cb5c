"""Resolving a run's config: hosted methods' params are written out in full, so that the
config alone rebuilds the method (no packaged YAML is read when it is built)."""
import copy

import pytest

from selfsup.config import expand_hosted, merge, packaged_config, resolve
from selfsup.errors import SelfSupError
from selfsup.methods import METHODS


def own_params(name: str) -> dict:
    return merge(dict(METHODS[name].defaults), packaged_config(name).get("params", {}))


def test_multitask_and_frost_configs_hold_their_hosted_methods_full_params():
    cfg = resolve("multitask", assignments=["params.task_params.jigsaw.permutations=30"])
    assert set(cfg["params"]["task_params"]) == {"rotation", "jigsaw"}
    assert cfg["params"]["task_params"]["rotation"] == own_params("rotation")
    assert cfg["params"]["task_params"]["jigsaw"] == {**own_params("jigsaw"), "permutations": 30}
    frost = resolve("frost", assignments=["params.self_supervised=byol"])
    assert frost["params"]["task_params"] == {"byol": own_params("byol")}
    assert expand_hosted(copy.deepcopy(cfg)) == cfg  # idempotent: a resolved config is complete


def test_a_config_written_before_hosted_params_were_written_out_is_completed():
    cfg = resolve("multitask")
    cfg["params"]["task_params"] = {"jigsaw": {"permutations": 30}}  # what such a config.yaml held
    assert expand_hosted(cfg)["params"]["task_params"]["rotation"] == own_params("rotation")
    assert cfg["params"]["task_params"]["jigsaw"]["permutations"] == 30


def test_bad_hosted_params_are_clear_errors():
    with pytest.raises(SelfSupError, match="unknown config key 'params.task_params.jigsaw.nope'"):
        resolve("multitask", assignments=["params.task_params.jigsaw.nope=1"])
    with pytest.raises(SelfSupError, match="params.task_params must map method names"):
        resolve("multitask", assignments=["params.task_params=3"])


def test_method_defaults_and_their_packaged_config_name_the_same_params():
    """A method's params are documented in its configs/NAME.yaml: it lists every default of the
    class and no param the class lacks."""
    for name, cls in METHODS.items():
        written = set(packaged_config(name).get("params", {}))
        assert written == set(cls.defaults), f"{name}: only in the class {sorted(set(cls.defaults) - written)}, " \
                                             f"only in the YAML {sorted(written - set(cls.defaults))}"


def test_changing_the_hosted_methods_of_a_resolved_config_drops_the_old_ones_full_params():
    cfg = resolve("multitask")
    cfg["params"]["tasks"] = ["rotation", "count"]
    assert set(expand_hosted(cfg)["params"]["task_params"]) == {"rotation", "count"}
    cfg["params"]["task_params"]["jigsaw"] = {"permutations": 30}  # an override of a task not trained: kept, for
    assert "jigsaw" in expand_hosted(cfg)["params"]["task_params"]  # multitask's check to name it
