"""S3 clients share the parsed service model and nothing else (vault/stores/s3.py `_session`).

A deposit makes a client per store object (listing, each worker thread, the snapshot). Each used
to parse botocore's S3 model anew (about 0.1 s, two of them at once on the way to the first
upload, and 0.25 s of garbage collection at exit). The model is shared now; credentials must
still be read for each client, as before.
"""

from __future__ import annotations

from vault.stores.s3 import S3Store

URL = "s3://bucket/v?endpoint=http://127.0.0.1:9&region=us-east-1"


def _model(store: S3Store) -> object:
    return store._client().meta.service_model._service_description


def test_clients_of_different_stores_share_one_parsed_model(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a")
    # Given two stores made one after the other, as a deposit's threads make them
    first, second = S3Store(URL), S3Store(URL)
    # Then their clients use the same parsed model, not a copy each
    assert _model(first) is _model(second)
    assert first._client() is not second._client()


def test_each_client_reads_the_credentials_of_its_time(monkeypatch):
    # Given a client made with one set of credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "first-secret")
    before = S3Store(URL)._client()
    # When the environment changes before the next store is made
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "second-secret")
    after = S3Store(URL)._client()
    # Then the new client has the new credentials, the old one keeps its own
    assert after._request_signer._credentials.access_key == "second-key"
    assert before._request_signer._credentials.access_key == "first-key"
