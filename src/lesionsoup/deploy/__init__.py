"""Models for end users: ``models`` resolves any model reference, ``predict`` turns
photographs into lesion maps, ``export`` (with ``model_card``) writes self-contained model
folders, and ``folders`` publishes every output folder whole.
"""
