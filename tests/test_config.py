from pathlib import Path

import pytest

from s2xr.config import build_config, load_config
from s2xr.errors import ConfigError

ROOT = Path(__file__).parent.parent


def test_shipped_configs_load():
    demo = load_config(ROOT / "configs" / "demo.yaml", environ={})
    assert demo.stac.collection == "sentinel-2-l2a"
    assert str(demo.storage.root) == "s2xr-demo"
    es = load_config(ROOT / "configs" / "earth-search.yaml", environ={})
    assert es.stac.collection == "sentinel-2-c1-l2a"
    assert es.stac.api_url.startswith("https://earth-search")


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"stac\.colection: unknown key"):
        build_config({"stac": {"colection": "x"}}, environ={})


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match=r"gate\.max_cloud"):
        build_config({"gate": {"max_cloud": 3}}, environ={})
    with pytest.raises(ConfigError, match=r"chip\.bands"):
        build_config({"chip": {"bands": ["red", "B99"]}}, environ={})
    with pytest.raises(ConfigError, match=r"dask\.scheduler"):
        build_config({"dask": {"scheduler": "gpu"}}, environ={})


def test_env_overrides_and_typing():
    cfg = build_config({"stac": {"max_cloud": 50}},
                       environ={"S2XR_STAC__MAX_CLOUD": "20", "S2XR_CHIP__BANDS": "[red, nir]"})
    assert cfg.stac.max_cloud == 20
    assert cfg.chip.bands == ("red", "nir")
    with pytest.raises(ConfigError, match=r"stac\.max_cloud"):
        build_config({}, environ={"S2XR_STAC__MAX_CLOUD": "lots"})


def test_api_key_from_env_or_dotenv_never_shown(tmp_path):
    secret = "sk-test-1234567890"
    cfg = build_config({}, environ={"AISSTREAM_API_KEY": secret}, dotenv_path=None)
    assert cfg.ais.api_key.get_secret_value() == secret
    assert secret not in repr(cfg) and secret not in str(cfg.model_dump())
    assert secret not in cfg.model_dump_json()
    env = tmp_path / ".env"
    env.write_text(f"AISSTREAM_API_KEY={secret}\n")
    cfg2 = build_config({}, environ={}, dotenv_path=env)
    assert cfg2.ais.api_key.get_secret_value() == secret
    with pytest.raises(ConfigError, match="never put the API key"):
        build_config({"ais": {"api_key": secret}}, environ={})


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_every_key_is_documented():
    """docs/configuration.md has a row for every config key (so the reference cannot rot)."""
    from pathlib import Path

    from s2xr.config import Config

    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    missing = [f"{sec}.{key}" for sec, field in Config.model_fields.items()
               for key, f in field.annotation.model_fields.items()
               if not f.exclude and f"| `{sec}.{key}` |" not in doc]
    assert not missing, f"undocumented config keys: {missing}"
