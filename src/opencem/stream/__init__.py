"""Stream processing: sources, windows and the stream runner (the same compiled plans as
``opencem evaluate``; docs/stream.md)."""

from .runner import StreamConfig, StreamReport, run_stream
from .sources import Batch, Delivery, Source, StreamError

__all__ = ["Batch", "Delivery", "Source", "StreamConfig", "StreamError", "StreamReport", "run_stream"]
