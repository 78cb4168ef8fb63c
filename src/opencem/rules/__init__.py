"""Alert rules (docs/rules.md): rule files in Prometheus's shape over opencem's indicators,
their evaluation and alert states, then routing, grouping, silences and inhibition, and the
actions alerts cause (a message to the customer, a webhook, a work order)."""
