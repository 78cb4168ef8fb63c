"""Quality-of-experience models: voice (G.107/G.107.1 E-model), web (G.1030), video (P.1203)."""
