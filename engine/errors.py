"""One error hierarchy for vtr.

Every error a user can cause or fix is a `VtrError` with a short `code` (used in API
error bodies) and a message that says what went wrong and, where possible, what to do.
The CLI prints the message on one line and exits non-zero; the API maps `code` to an
HTTP status in one place.
"""


class VtrError(Exception):
    """Base of every error vtr raises on purpose."""

    code = "error"


class ConfigError(VtrError):
    """The configuration file or an environment override is invalid."""

    code = "bad_config"


class InputError(VtrError):
    """A request or argument is malformed or out of range."""

    code = "bad_request"


class NotFoundError(VtrError):
    """A named collection, video, job or file does not exist."""

    code = "not_found"


class ConflictError(VtrError):
    """The request conflicts with existing state (e.g. a duplicate name)."""

    code = "conflict"


class CatalogError(VtrError):
    """The SQL catalog cannot be reached or is not in the expected state."""

    code = "catalog_error"


class CatalogNotInitialisedError(CatalogError):
    """No catalog exists yet, or its schema is older than this vtr."""

    code = "catalog_not_initialised"


class DecodeError(VtrError):
    """A video file cannot be read: missing, not a video, empty, truncated or corrupt."""

    code = "decode_error"


class ModelError(VtrError):
    """An encoder or model cannot be built: unknown name, missing weights, bad checkpoint."""

    code = "model_error"


class VectorIndexError(VtrError):
    """A FAISS vector index cannot be built, updated or searched as asked."""

    code = "index_error"


class IndexMismatchError(VectorIndexError):
    """A stored index was built for another encoder or dimension than expected."""

    code = "index_mismatch"


class IndexUnreadableError(VectorIndexError):
    """A stored index is missing or damaged; `vtr reindex` rebuilds it from the catalog."""

    code = "index_unreadable"
