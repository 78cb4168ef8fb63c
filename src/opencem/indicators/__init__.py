"""Indicator engine: KPI/KQI/CEI definitions, the compiled plan, renderers per engine, QoE models."""
