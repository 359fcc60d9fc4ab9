"""How asset functions name pandas DataFrames without importing pandas.

Dagster resolves the annotations of asset functions when it defines them, in every code server
and run worker; pandas (with numpy) costs more to import than Dagster itself. Type checkers
see ``pandas.DataFrame``; Dagster sees ``Any``, and pandas loads in the run that needs it.
"""

from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import pandas as pd

    Frame: TypeAlias = pd.DataFrame
else:
    Frame = Any
