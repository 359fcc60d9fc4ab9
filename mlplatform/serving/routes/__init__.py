"""The routes of the serving app, one module per idea; ``serving.app`` includes them."""

from fastapi import APIRouter, FastAPI


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Add ``router``'s routes to ``app`` as plain ``APIRoute`` entries of ``app.routes``.

    FastAPI's ``include_router`` nests a router's routes in one included-router entry; added
    directly they are seen, like routes declared on the app, by the route-auth checks, the
    metrics' route templates (``scope["route"]``) and the fast path's route lookup."""
    app.router.routes.extend(router.routes)
