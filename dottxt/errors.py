"""Import path kept for existing code: the exception tree lives in `dottxt._errors`; import it from `dottxt`."""

from ._errors import *  # noqa: F403
from ._errors import __all__ as __all__
