"""The digital-twin operator: network, people, traffic, faults with ground truth, customer behaviour."""
