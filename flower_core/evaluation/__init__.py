"""How good a run is: metrics, calibration, predictions on new photos, the runs table's details."""
