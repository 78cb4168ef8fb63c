"""Analytics on top of the indicator cubes: CEI calibration now; churn, NPS and forecasts next."""
