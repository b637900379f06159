"""Moved to mixer.devtools.sample_data (a developer tool, not part of the pipeline); this name
stays so that existing imports and `python -m mixer.sample_data` keep working."""

import sys

from mixer.devtools import sample_data as _impl

if __name__ == "__main__":
    sys.exit(_impl.main())
else:
    sys.modules[__name__] = _impl  # the same module object: every name, private ones too
