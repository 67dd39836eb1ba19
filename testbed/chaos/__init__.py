"""The chaos soak: random faults combined on a lab, the mesh checked against its invariants
continuously, a seed to replay any failure. `schedule` decides the faults, `invariants` judges
what is observed; both are pure."""
