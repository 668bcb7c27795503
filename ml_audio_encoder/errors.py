"""The two exception types a user of the codec can meet.

Both subclass ``ValueError`` so generic callers that already catch bad values keep working, while the CLI and
library users can catch exactly "this .mlae file is unusable" or "this audio cannot be coded". Messages are one line
and name the offending file when there is one, because they are printed as-is by ``mlae``.
"""


class CodecFileError(ValueError):
    """A ``.mlae`` file is unusable: truncated, corrupted (CRC mismatch), wrong magic, a future format version,
    inconsistent header fields, or written by a model other than the one asked to decode it."""


class AudioInputError(ValueError):
    """Input audio cannot be coded: unreadable, truncated or empty file, NaN/inf samples, or a malformed array."""
