"""The service (服务): a FastAPI app over one workspace's engine, with Chinese web pages. Entry point:
`create_app(workspace)`; `ServiceSettings` — its TDR_* settings."""

from data.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "api.app": ("create_app",),
        "api.settings": ("ServiceSettings",),
    },
)
