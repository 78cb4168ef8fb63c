"""Query engines over the lake: connection and execution only (rendering lives in indicators/)."""
