"""The service (服务): a FastAPI app over one workspace's engine, with Chinese web pages. Entry point:
`create_app(workspace)`; `ServiceSettings` — its TDR_* settings."""

from data.lazy import lazy_exports

_EXPORTS = {"create_app": "api.app", "ServiceSettings": "api.settings"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
