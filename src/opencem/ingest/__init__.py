"""Getting data into the lake: readers per format, validation, the lake writer."""
