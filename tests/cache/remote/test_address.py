"""``oci://HOST[:PORT]/REPO`` parsing: HTTPS unless oci+http:// says otherwise; bad addresses and
addresses holding credentials are usage errors that never echo the credentials."""

from __future__ import annotations

import pytest

from builder.cache.remote.address import parse
from builder.errors import UsageError


@pytest.mark.parametrize("text,base", [
    ("oci://registry.example.com/team/ironforge", "https://registry.example.com/v2/team/ironforge"),
    ("oci://localhost:5000/stages", "https://localhost:5000/v2/stages"),
    ("oci+http://127.0.0.1:5000/ironforge/stages", "http://127.0.0.1:5000/v2/ironforge/stages"),
    ("oci://[::1]:5000/a-b/c_d.e", "https://[::1]:5000/v2/a-b/c_d.e"),
])
def test_good_addresses(text, base):
    a = parse(text)
    assert a.base == base
    assert str(parse(str(a))) == str(a)


@pytest.mark.parametrize("text", ["registry/x", "https://host/x", "oci://host", "oci://host/UPPER",
                                  "oci://host:99999/x", "oci://ho st/x", "oci://host/x//y", "oci://-host/x"])
def test_bad_addresses_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse(text)


def test_credentials_in_the_address_are_refused_and_not_echoed():
    with pytest.raises(UsageError) as e:
        parse("oci://alice:hunter2-pw@registry.example.com/x")
    assert "hunter2-pw" not in e.value.message and "hunter2-pw" not in (e.value.hint or "")
