"""Resolving a run's config: the typed, validated config; hosted methods' params written out
in full, so that the config alone rebuilds the method (no packaged YAML is read when it is
built); class and YAML defaults that agree."""
import copy
import math
import re
from pathlib import Path

import pytest
import yaml

from selfsup.config import expand_hosted, merge, packaged_config, resolve
from selfsup.errors import SelfSupError
from selfsup.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]


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


def test_resolve_returns_a_typed_config_that_still_reads_and_dumps_as_a_dict():
    from selfsup.config import Config, RunSettings
    from selfsup.rundir import dump

    cfg = resolve("simclr", flags={"epochs": 3, "optimizer": {"lr": 0.1}})
    assert isinstance(cfg, Config) and cfg["epochs"] == 3
    settings = cfg.settings
    assert isinstance(settings, RunSettings)
    assert (settings.epochs, settings.optimizer.lr, settings.knn.k) == (3, 0.1, 200)
    assert yaml.safe_load(dump(cfg)) == dict(cfg)  # config.yaml stays a plain mapping
    assert isinstance(merge(cfg, {"seed": 2}), Config)  # a suite's layers keep the type


@pytest.mark.parametrize("flags, message", [
    ({"epochs": 0}, "epochs must be at least 1, got 0"),
    ({"batch_size": "big"}, "batch_size must be an integer, got 'big'"),
    ({"optimizer": {"lr": "fast"}}, "optimizer.lr must be a number, got 'fast'"),
    ({"optimizer": {"name": "rmsprop"}}, "optimizer.name must be one of sgd, adam, adamw, lars"),
    ({"trainer": {"precision": "64"}}, "trainer.precision must be one of auto, 32-true, bf16-mixed, 16-mixed"),
    ({"knn": {"final": "yes"}}, "knn.final must be true or false, got 'yes'"),
    ({"data": {"channels": 0}}, "data.channels must be at least 1, got 0"),
    ({"subset": 0}, "subset must be at least 1, got 0"),
    ({"backbone": {"name": "resnet7"}}, "unknown backbone 'resnet7'; choose one of: auto, resnet18"),
])
def test_every_setting_is_checked_against_its_type_and_range(flags, message):
    with pytest.raises(SelfSupError, match=re.escape(message)):
        resolve("simclr", flags=flags)


def test_pretrain_checks_a_config_built_without_the_command_line(tmp_path):
    """A suite or a script that changes a resolved config gets the command line's checks."""
    from selfsup.engine.train import pretrain

    cfg = merge(resolve("simclr", flags={"dataset": "synthetic"}), {"epochs": -1})
    with pytest.raises(SelfSupError, match="epochs must be at least 1"):
        pretrain(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_every_committed_run_config_is_a_valid_typed_config():
    """Old runs still load: every committed config.yaml of an image or series run reads as RunSettings."""
    from selfsup.config import RunSettings

    configs = [yaml.safe_load(path.read_text()) for path in (ROOT / "benchmarks").glob("**/config.yaml")]
    runs = [c for c in configs if "network" not in c]  # forecasting runs have their own settings
    assert len(runs) > 100
    for cfg in runs:
        RunSettings.of(cfg)


def _agrees(written, default) -> bool:
    """Whether a value written in a method's YAML is its class default: mappings key by key (the
    YAML may leave out settings at their defaults), numbers to 7 significant digits."""
    if isinstance(written, dict) and isinstance(default, dict):
        return all(k in default and _agrees(v, default[k]) for k, v in written.items())
    if isinstance(written, list) and isinstance(default, (list, tuple)):
        return len(written) == len(default) and all(map(_agrees, written, default))
    if isinstance(written, float) or isinstance(default, float):
        return written is not None and default is not None and math.isclose(written, default, rel_tol=1e-7)
    return written == default


def test_class_defaults_and_packaged_yaml_give_every_param_the_same_value():
    """A method's defaults are written in its class and documented in configs/NAME.yaml: the two must agree."""
    for name, cls in METHODS.items():
        written = packaged_config(name).get("params", {})
        differ = {k: (cls.defaults[k], v) for k, v in written.items() if not _agrees(v, cls.defaults[k])}
        assert not differ, f"{name}: class vs YAML {differ}"


def test_the_agreement_check_catches_a_changed_default():
    assert _agrees({"crop_scale": [0.08, 1.0], "blur_p": 0.5}, {"crop_scale": (0.08, 1.0), "blur_p": 0.5, "flip_p": 0.5})
    assert not _agrees({"blur_p": 1.0}, {"blur_p": 0.5})
    assert not _agrees({"crop_scale": [0.2, 1.0]}, {"crop_scale": [0.08, 1.0]})
    assert not _agrees(0.07, 0.2) and _agrees(1.3333333, 4 / 3) and not _agrees(None, 0.1)


def test_recipe_auto_is_short_below_100_epochs_and_paper_from_there():
    short, paper = resolve("byol", flags={"epochs": 99}), resolve("byol", flags={"epochs": 100})
    assert short["recipe"] == "short" and paper["recipe"] == "paper"
    assert (short["optimizer"]["lr"], short["params"]["base_momentum"]) == (1.0, 0.99)  # recipes.yaml's
    assert (paper["optimizer"]["lr"], paper["params"]["base_momentum"]) == (0.2, 0.996)  # byol.yaml's (the paper's)
    assert resolve("byol", flags={"epochs": 5, "recipe": "paper"})["params"]["base_momentum"] == 0.996
    assert resolve("byol", flags={"epochs": 500, "recipe": "short"})["params"]["base_momentum"] == 0.99
    # a method without a short entry: the two recipes are the same settings
    rotation = [resolve("rotation", flags={"epochs": 5, "recipe": r}) for r in ("short", "paper")]
    assert {k: v for k, v in rotation[0].items() if k != "recipe"} == {k: v for k, v in rotation[1].items() if k != "recipe"}


def test_the_users_settings_win_over_the_recipe_and_a_run_config_resolves_to_itself(tmp_path):
    cfg = resolve("byol", flags={"epochs": 5}, assignments=["params.base_momentum=0.9"])
    assert cfg["params"]["base_momentum"] == 0.9 and cfg["optimizer"]["lr"] == 1.0
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(dict(cfg)))
    assert resolve("byol", str(saved)) == cfg
    # a later --epochs over a saved short run keeps the recipe it names
    assert resolve("byol", str(saved), flags={"epochs": 300})["optimizer"]["lr"] == 1.0


def test_every_short_recipe_names_a_method_and_only_settings_it_has():
    recipes = packaged_config("recipes")
    assert set(recipes) == {"short"}
    for method, layer in recipes["short"].items():
        assert method in METHODS, method
        cfg = resolve(method, flags={"epochs": 5})  # a key the method lacks would be an error here
        assert merge(cfg, layer) == cfg, method


def test_an_unknown_recipe_is_one_clear_error():
    with pytest.raises(SelfSupError, match="recipe must be one of auto, paper, short, got 'fast'"):
        resolve("simclr", assignments=["recipe=fast"])


def test_several_sets_add_to_one_hosted_methods_params():
    cfg = resolve("multitask", assignments=["params.tasks=[simclr,rotation]", "params.task_params.simclr.temperature=0.2",
                                           "params.task_params.simclr.augment.crop_scale=[0.2,1.0]"])
    simclr = cfg["params"]["task_params"]["simclr"]
    assert simclr["temperature"] == 0.2 and simclr["augment"]["crop_scale"] == [0.2, 1.0]
    assert simclr["augment"]["flip_p"] == 0.5  # the rest of SimCLR's view pipeline kept
    with pytest.raises(SelfSupError, match="unknown config key 'params.task_params.simclr.nope'"):
        resolve("multitask", assignments=["params.tasks=[simclr,rotation]", "params.task_params.simclr.temperature=0.2",
                                          "params.task_params.simclr.nope=1"])


@pytest.mark.parametrize("network", ["vit-tiny", "vit-small", "wrn-28-2"])
def test_a_width_the_network_would_ignore_is_refused(network, tmp_path):
    with pytest.raises(SelfSupError, match=f"backbone.width \\(32\\) does not apply to {network}"):
        resolve("simclr", flags={"backbone": {"name": network, "width": 32}})
    with pytest.raises(SelfSupError, match="does not apply"):
        resolve("simclr", flags={"backbone": {"name": network}}, assignments=["backbone.width=32"])
    own = resolve("simclr", flags={"backbone": {"name": network}})  # its config.yaml resolves to itself
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(dict(own)))
    assert resolve("simclr", str(tmp_path / "config.yaml")) == own
    assert resolve("simclr", flags={"backbone": {"name": "vit", "width": 32}})["backbone"]["width"] == 32
