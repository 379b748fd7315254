import pytest

from reranker_server.api.registration import Registrar, default_endpoint_name, split_address
from reranker_server.core.settings import Settings


@pytest.mark.parametrize(
    ("advertise", "expected"),
    [
        ("10.0.0.5:8000", ("10.0.0.5", 8000)),
        ("mini-1.lan:9000", ("mini-1.lan", 9000)),
        ("[fd00::5]:8000", ("fd00::5", 8000)),
    ],
)
def test_split_address(advertise: str, expected: tuple[str, int]) -> None:
    assert split_address(advertise) == expected


@pytest.mark.parametrize("bad", ["10.0.0.5", "host:port", "fd00::5:8000", ""])
def test_split_address_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_address(bad)


def test_manifests_name_the_lease_and_the_reranker() -> None:
    settings = Settings(register=True, reranker="fleet", namespace="search", advertise_address="10.0.0.5:8000")
    registrar = Registrar(settings, client=None, capacity=16)  # type: ignore[arg-type]
    endpoint, lease = registrar.endpoint(), registrar.lease()
    assert endpoint["spec"]["rerankerRef"] == {"name": "fleet"}
    assert (endpoint["spec"]["address"], endpoint["spec"]["port"]) == ("10.0.0.5", 8000)
    assert endpoint["spec"]["leaseName"] == lease["metadata"]["name"] == f"reranker-endpoint-{registrar.name}"
    assert registrar.name == default_endpoint_name("fleet")
    assert lease["spec"]["leaseDurationSeconds"] == 30
    assert lease["spec"]["renewTime"].endswith("Z")
