"""The dashboard of ``chalk serve``: its JSON (``views``), local time series (``series``),
Kubernetes time series (``prometheus``) and routes (``routes``); the page is in ``static``."""
