"""The contracts every stage shares: lesion classes, specs, checkpoint format, atomic files,
fingerprints, metric definitions, devices.
"""
