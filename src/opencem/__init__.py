"""opencem: open-source Customer Experience Management for telecom operators."""

__version__ = "0.1.0"
