"""edgedet: object detectors from the workstation to the robot."""
__version__ = "0.1.0"
