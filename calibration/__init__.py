"""INT8 calibration (calibration data sources, QDQ quantization, accuracy gate) and, later,
sensor calibration. Nothing is implemented here yet: the INT8 issue builds it on the
preprocessing in :mod:`edgefusion.preprocess` and the model packages of :mod:`edgefusion.package`.
"""
