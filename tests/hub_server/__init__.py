"""A local, in-memory Hugging Face Hub-compatible HTTP server for tests.

The Hub cannot be reached from the test machines, so tests drive the REAL ``huggingface_hub`` client (and
``transformers``) against this stdlib server on ``127.0.0.1:<free port>``. It implements the endpoints the client
calls for pushes and pulls (see /work/shared/HUB_TESTING.md): repos, refs, commits, tree, paths-info, preupload,
ndjson commits, Git LFS batch + basic PUT, ``resolve`` (HEAD/GET/Range), and Xet write/read tokens pointing real
``hf_xet`` at a ``local://`` CAS folder.

Usage (the fixtures in the repository's ``conftest.py`` do all of this)::

    def test_push(hub_client, hub_server, model_dir):     # hub_client: HfApi(endpoint=..., token=...)
        hub_client.create_repo("me/rm")
        hub_client.create_branch("me/rm", branch="lambda-0.30")
        hub_client.upload_folder(repo_id="me/rm", folder_path=model_dir, revision="lambda-0.30")
        assert hub_server.files("me/rm", "lambda-0.30")["config.json"] == (model_dir / "config.json").read_bytes()
        assert hub_server.commits("me/rm", "lambda-0.30")[0].title == "Upload folder using huggingface_hub"
        # huggingface_hub.constants are patched as well, so calls that take no endpoint reach the server too:
        AutoModelForSequenceClassification.from_pretrained("me/rm", revision="lambda-0.30")

    hub_server.fail_next_commit()        # the next POST .../commit/<rev> answers HTTP 500
    hub_server.requests                  # [(method, path), ...] of everything the client called
    hub_server.server_errors             # tracebacks of server bugs (answered 500); the fixture fails on any

Outside pytest: ``with LocalHub() as hub: api = HfApi(endpoint=hub.endpoint, token=hub.token)``; code paths that
take no ``endpoint`` argument need :func:`patch_hf_client`.

Not implemented (answered 404/400 with a clear message): pull requests / ``create_pr``, discussions, super-squash,
LFS multipart and LFS download batches, tree pagination (one page), ``.gitignore`` handling in preupload.

Xet: with ``hf_xet`` enabled the client uploads xorbs and shards to ``hub.xet_dir``; when a commit references such
a file by sha256, the server finds its Xet hash in the shards and rebuilds the bytes with ``hf_xet`` (so
:meth:`LocalHub.files` and plain HTTP downloads serve them), and ``resolve`` advertises ``X-Xet-Hash`` so that
Xet-enabled clients download through ``hf_xet`` from the same folder.

Modules: ``storage`` (repos, commits, file bytes), ``server`` (:class:`LocalHub`: lifecycle and test controls),
``handler`` (HTTP plumbing, auth), ``routes`` (the URL table), ``api``, ``lfs``, ``xet`` and ``downloads`` (the
endpoints), ``client`` (:func:`patch_hf_client`).
"""

from tests.hub_server.client import patch_hf_client
from tests.hub_server.lfs import DEFAULT_GITATTRIBUTES
from tests.hub_server.server import HUB_TOKEN, HUB_USER, LocalHub
from tests.hub_server.storage import Commit, LocalHubError, StoredFile

__all__ = [
    "DEFAULT_GITATTRIBUTES", "HUB_TOKEN", "HUB_USER", "Commit", "LocalHub", "LocalHubError", "StoredFile",
    "patch_hf_client",
]
