"""Diagnosis: why a customer's experience is poor, and where (issue 13).

Evidence from the lake (:mod:`.evidence`), an expert rule layer in editable YAML
(:mod:`.rules`), a learned layer for what the rules leave open (:mod:`.learned`), conclusions
with their ranked locations (:mod:`.decide`), problems clustered from many cases
(:mod:`.problems`), the customer's self-check (:mod:`.selfcheck`), and scoring against labelled
cases handed in as plain tables (:mod:`.score`). It never reads the simulator's truth.
"""
