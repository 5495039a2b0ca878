"""S3 settings from the environment (:mod:`radiobject_adapter.s3env`): what a new process reads.

Pure parsing, no server: the bundle and MONAI Label tests on S3 (tests/bundles/test_bundles_on_s3.py,
tests/monailabel_app/test_datastore_s3.py) prove that processes configured this way reach moto.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from radiobject_adapter import S3Config, configure
from radiobject_adapter.config import current_settings
from radiobject_adapter.s3env import S3EnvError, apply_s3_env, s3_config_from_env


@pytest.fixture
def _restore_settings() -> Iterator[None]:
    saved = current_settings().s3
    yield
    configure(s3=saved)


def test_nothing_set_changes_nothing() -> None:
    assert s3_config_from_env({}) is None
    assert s3_config_from_env({"AWS_ACCESS_KEY_ID": "AKIA", "AWS_ENDPOINT_URL": "  "}) is None


def test_endpoint_url_gives_scheme_host_and_path_style() -> None:
    cfg = s3_config_from_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})
    assert cfg is not None
    assert (cfg.endpoint_override, cfg.scheme, cfg.use_virtual_addressing) == ("127.0.0.1:9000", "http", False)
    assert cfg.region == S3Config().region  # the rest stays at its defaults

    cfg = s3_config_from_env({"AWS_ENDPOINT_URL": "minio.lan:9000/"})  # no scheme: TLS
    assert cfg is not None and (cfg.endpoint_override, cfg.scheme) == ("minio.lan:9000", "https")


def test_s3_specific_endpoint_and_aws_region_win() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://other:1",
        "AWS_ENDPOINT_URL_S3": "https://s3.example:8443",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-central-1",
        "RADIOBUNDLES_S3_ADDRESSING_STYLE": "virtual",
        "RADIOBUNDLES_S3_MAX_PARALLEL_OPS": "3",
        "RADIOBUNDLES_S3_MULTIPART_PART_SIZE": "5242880",
    }
    cfg = s3_config_from_env(env)
    assert cfg == S3Config(
        region="eu-central-1",
        endpoint_override="s3.example:8443",
        scheme="https",
        use_virtual_addressing=True,
        max_parallel_ops=3,
        multipart_part_size=5242880,
    )


def test_region_alone_keeps_aws_addressing() -> None:
    cfg = s3_config_from_env({"AWS_DEFAULT_REGION": "ap-south-1"})
    assert cfg == S3Config(region="ap-south-1")


@pytest.mark.parametrize(
    "env, names",
    [
        ({"AWS_ENDPOINT_URL": "ftp://host:21"}, "AWS_ENDPOINT_URL"),
        ({"AWS_ENDPOINT_URL_S3": "http://host:9000/bucket"}, "AWS_ENDPOINT_URL_S3"),
        ({"RADIOBUNDLES_S3_ADDRESSING_STYLE": "dns"}, "RADIOBUNDLES_S3_ADDRESSING_STYLE"),
        ({"RADIOBUNDLES_S3_MAX_PARALLEL_OPS": "0"}, "RADIOBUNDLES_S3_MAX_PARALLEL_OPS"),
        ({"RADIOBUNDLES_S3_MULTIPART_PART_SIZE": "big"}, "RADIOBUNDLES_S3_MULTIPART_PART_SIZE"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(S3EnvError, match=names):
        s3_config_from_env(env)


def test_an_endpoint_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(S3EnvError) as info:
        s3_config_from_env({"AWS_ENDPOINT_URL": "http://AKIAXYZ:s3cr3tValue@127.0.0.1:9000"})
    assert "AWS_ENDPOINT_URL" in str(info.value)
    assert "s3cr3tValue" not in str(info.value) and "AKIAXYZ" not in str(info.value)


@pytest.mark.usefixtures("_restore_settings")
def test_apply_keeps_what_configure_set_and_the_environment_does_not_name() -> None:
    configure(s3=S3Config(connect_max_tries=2, request_timeout_ms=3000))
    applied = apply_s3_env({"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9999"})
    assert applied is not None and current_settings().s3 == applied
    assert (applied.endpoint_override, applied.scheme, applied.use_virtual_addressing) == (
        "127.0.0.1:9999",
        "http",
        False,
    )
    assert (applied.connect_max_tries, applied.request_timeout_ms) == (2, 3000)
    assert apply_s3_env({}) is None and current_settings().s3 == applied
