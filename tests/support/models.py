"""What the models of the ``model_cache`` fixture (conftest) are built with."""

#: the class count of every model ``model_cache`` builds
NUM_CLASSES = 5
