"""A stage cache shared across machines through an OCI registry.

One stage = one OCI artifact, tagged with the stage's cache key: config = its ``meta.json``,
layers = its files, subject = the previous stage's manifest. A local miss asks the registry
for the key's tag; a stage built here is pushed (blobs first, manifest last, so a reader never
sees half an artifact). The registry is an optimisation, never a dependency: whatever goes
wrong with it, the build goes on locally (``cache.RemoteCache`` holds that policy).

- ``address``: ``oci://HOST[:PORT]/REPO`` parsed and checked;
- ``credentials``: user/password from the environment or the Docker config (never logged);
- ``registry``: the OCI distribution API over requests (blobs, manifests, Basic/Bearer auth);
- ``layout``: a stage directory <-> an OCI manifest, and landing a pulled one in the store;
- ``cache``: what the engine calls, and the fault policy.
"""
