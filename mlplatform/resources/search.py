"""Where hyperparameter searches keep their Optuna studies (``Settings.search``)."""

import dagster as dg


class SearchStorage(dg.ConfigurableResource):
    """SQLAlchemy URL of the search database: SQLite under the home, PostgreSQL in production."""

    url: str
