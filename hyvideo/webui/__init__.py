"""The web UI (``gradio_server.py``): sizes offered (:mod:`.sizes`), the job engine (:mod:`.engine`, no web code)
and the gradio page (:mod:`.app`, imports gradio; the rest of the package does not need it)."""
